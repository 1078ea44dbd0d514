"""Data commands: ``synth``, ``ingest``, ``info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from echoclr.cli.progress import progress_callback

console = Console(stderr=True)
StorageOptions = Annotated[Optional[list[str]], typer.Option(
    "--storage-option", help="fsspec option for a URL store, key=value (repeatable), e.g. "
    "endpoint_url=http://127.0.0.1:9000; credentials also come from the standard environment variables.")]


def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the videos and manifest.csv into.")],
    studies: Annotated[int, typer.Option(help="Number of patient studies (1-6 videos each).")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
    dicom_fraction: Annotated[float, typer.Option(help="Fraction of videos written as DICOM cine instead of AVI.")] = 0.0,
    label_noise: Annotated[float, typer.Option(help="Probability of flipping each study label.")] = 0.0,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT folder.")] = False,
) -> None:
    """Generate the built-in synthetic PLAX echo dataset (real AVI/DICOM files and a manifest)."""
    from echoclr.synth import SynthConfig, generate_dataset

    config = SynthConfig(n_studies=studies, seed=seed, dicom_fraction=dicom_fraction, label_noise=label_noise)
    with progress_callback("synthesising videos") as progress:
        manifest = generate_dataset(out, config, overwrite=overwrite, progress=progress)
    console.print(f"wrote {manifest}")


def ingest(
    manifest: Annotated[
        Path,
        typer.Argument(help="Manifest CSV, or a dataset folder: EchoNet-LVH (MeasurementsList.csv + Batch1..4/), "
                       "MIMIC-IV-ECHO (echo-record-list.csv + files/), EchoNet-style (FileList.csv + Videos/) or "
                       "any DICOM tree."),
    ],
    out: Annotated[str, typer.Option("--out", help="Store to write: a local path or an fsspec URL.")],
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Delete whatever is at --out first (no resume).")] = False,
    max_failures: Annotated[int, typer.Option(help="Exit non-zero when more files than this fail.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the per-study 75/10/15 split for rows without one.")] = 0,
    size: Annotated[int, typer.Option(help="Stored frame size in pixels (the paper: 112).")] = 112,
    mask_source: Annotated[str, typer.Option(help="Sector mask from the 'max' over frames or the 'first' frame.")] = "max",
    lvh_threshold_cm: Annotated[
        float, typer.Option(help="EchoNet-LVH: lvh = 1 when IVSd or LVPWd exceeds this many cm (ASE/EACVI 2015: "
                            "normal <= 1.0 cm in men, <= 0.9 cm in women).")
    ] = 1.1,
    labels: Annotated[
        Path | None, typer.Option(help="CSV of 0/1 label columns to join onto the videos (any layout).")
    ] = None,
    labels_key: Annotated[
        str, typer.Option(help="Column of --labels that identifies rows: study_id or video_id.")
    ] = "study_id",
    view_model: Annotated[
        Path | None, typer.Option(help="TorchScript view classifier (see README: input/output contract).")
    ] = None,
    keep_view: Annotated[str | None, typer.Option(help="With --view-model: the class name to keep, e.g. PLAX.")] = None,
    min_prob: Annotated[float, typer.Option(help="With --view-model: keep videos whose mean probability of "
                                            "--keep-view (as the top class) is at least this.")] = 0.5,
    view_frames: Annotated[int, typer.Option(help="With --view-model: frames per video given to it.")] = 10,
    engine: Annotated[str, typer.Option(help="Where tasks run: 'local' (process pool) or 'dask' (one task per study on "
                                             "a Dask cluster).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (tcp://host:8786) for --engine dask; "
                                                          "default: a LocalCluster of --workers processes.")] = None,
    storage_option: StorageOptions = None,
) -> None:
    """Decode, de-identify (sector mask), resize and store videos; a rerun resumes where the last one stopped."""
    from echoclr.ingest import ViewFilter, join_labels, rows_for
    from echoclr.ingest.runner import REPORT_NAME, ingest_rows
    from echoclr.store import PreprocessConfig
    from echoclr.store.options import parse_storage_options

    options = parse_storage_options(storage_option)
    if (view_model is None) != (keep_view is None):
        raise ValueError("--view-model and --keep-view go together: pass both (or neither)")
    view_filter = None if view_model is None else ViewFilter(str(view_model), keep_view, min_prob, view_frames)
    preprocess = PreprocessConfig(size=size, mask_source=mask_source)
    rows = rows_for(manifest, split_seed=split_seed, lvh_threshold_cm=lvh_threshold_cm)
    if labels is not None:
        joined = join_labels(rows, labels, labels_key)
        rows = joined.rows
        if joined.unknown_ids:
            shown = ", ".join(joined.unknown_ids[:10]) + (" ..." if len(joined.unknown_ids) > 10 else "")
            console.print(f"[yellow]{len(joined.unknown_ids)} {labels_key} value(s) of {labels} match no video "
                          f"and were ignored: {shown}[/yellow]")
    with progress_callback("ingesting videos") as progress:
        result = ingest_rows(rows, out, preprocess=preprocess, workers=workers, overwrite=overwrite,
                             progress=progress, view_filter=view_filter,
                             engine=engine, scheduler=scheduler, storage_options=options)
    for failure in result.failures:
        console.print(f"[red]failed[/red] line {failure.row}: {failure.reason}")
    for skipped in result.excluded:
        console.print(f"line {skipped.row}: {skipped.path}: {skipped.reason}")
    console.print(
        f"{len(result.records)} of {len(rows)} videos in {out} ({result.n_written} written, {result.n_skipped} "
        f"already there, {len(result.excluded)} skipped on purpose, {len(result.failures)} failed; report: "
        f"{out}/{REPORT_NAME})"
    )
    if len(result.failures) > max_failures:
        console.print(f"[red]{len(result.failures)} failures exceed --max-failures {max_failures}[/red]")
        raise typer.Exit(1)


def info(
    store: Annotated[str, typer.Argument(help="Store: a local path or an fsspec URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Counts of videos, studies and frames per split and label."""
    from echoclr.store import open_store
    from echoclr.store.options import parse_storage_options

    summary = open_store(store, storage_options=parse_storage_options(storage_option)).summary()
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    print_summary(summary)


def print_summary(summary: dict) -> None:
    out = Console()
    out.print(
        f"[bold]{summary['location']}[/bold]: {summary['n_videos']} videos, {summary['n_studies']} studies, "
        f"{summary['n_frames']} frames (store schema v{summary['schema_version']}, echoclr "
        f"{summary['software_version']}, {summary['preprocess']['size']} px)"
    )
    table = Table("split", "videos", "studies", "frames")
    for split, counts in summary["splits"].items():
        table.add_row(split, str(counts["n_videos"]), str(counts["n_studies"]), str(counts["n_frames"]))
    out.print(table)
    if summary["labels"]:
        labels = Table("label", "positive studies", "negative studies", "unknown")
        for name, counts in summary["labels"].items():
            labels.add_row(name, *(str(counts[k]) for k in ("positive_studies", "negative_studies", "unknown_studies")))
        out.print(labels)
    for flag, count in summary["n_flagged"].items():
        out.print(f"flag {flag}: {count} videos")


store_app = typer.Typer(help="Store maintenance.", no_args_is_help=True)


@store_app.command("upgrade")
def upgrade(
    store: Annotated[str, typer.Argument(help="Store: a local path or an fsspec URL.")],
    storage_option: StorageOptions = None,
) -> None:
    """Rewrite an older store's index in the current schema (every video array is kept; safe to rerun)."""
    from echoclr.store import StoreError, upgrade_store
    from echoclr.store.options import parse_storage_options

    try:
        done = upgrade_store(store, storage_options=parse_storage_options(storage_option))
    except (FileNotFoundError, StoreError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if done["upgraded"]:
        console.print(f"upgraded {store} from schema v{done['from_version']} to v{done['to_version']} "
                      f"({done['n_videos']} videos)")
    else:
        console.print(f"{store} is already schema v{done['to_version']} ({done['n_videos']} videos): nothing to do")


def register(app: typer.Typer) -> None:
    app.command()(synth)
    app.command()(ingest)
    app.command()(info)
    app.add_typer(store_app, name="store")
