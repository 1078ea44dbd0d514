"""Data commands: ``synth``, ``ingest``, ``info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from echoclr.cli.progress import progress_callback

console = Console(stderr=True)


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
        Path, typer.Argument(help="Manifest CSV, an EchoNet-style folder (FileList.csv + Videos/) or a DICOM folder.")
    ],
    out: Annotated[str, typer.Option("--out", help="Store to write: a local path or an fsspec URL.")],
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Delete whatever is at --out first (no resume).")] = False,
    max_failures: Annotated[int, typer.Option(help="Exit non-zero when more files than this fail.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the per-study 75/10/15 split for rows without one.")] = 0,
    size: Annotated[int, typer.Option(help="Stored frame size in pixels (the paper: 112).")] = 112,
    mask_source: Annotated[str, typer.Option(help="Sector mask from the 'max' over frames or the 'first' frame.")] = "max",
) -> None:
    """Decode, de-identify (sector mask), resize and store videos; a rerun resumes where the last one stopped."""
    from echoclr.ingest import rows_for
    from echoclr.ingest.runner import REPORT_NAME, ingest_rows
    from echoclr.store import PreprocessConfig

    preprocess = PreprocessConfig(size=size, mask_source=mask_source)
    rows = rows_for(manifest, split_seed=split_seed)
    with progress_callback("ingesting videos") as progress:
        result = ingest_rows(rows, out, preprocess=preprocess, workers=workers, overwrite=overwrite,
                             progress=progress)
    for failure in result.failures:
        console.print(f"[red]failed[/red] line {failure.row}: {failure.reason}")
    console.print(
        f"{len(result.records)} of {len(rows)} videos in {out} ({result.n_written} written, {result.n_skipped} "
        f"already there, {len(result.failures)} failed; report: {out}/{REPORT_NAME})"
    )
    if len(result.failures) > max_failures:
        console.print(f"[red]{len(result.failures)} failures exceed --max-failures {max_failures}[/red]")
        raise typer.Exit(1)


def info(
    store: Annotated[str, typer.Argument(help="Store: a local path or an fsspec URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Counts of videos, studies and frames per split and label."""
    from echoclr.store import open_store

    summary = open_store(store).summary()
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


def register(app: typer.Typer) -> None:
    app.command()(synth)
    app.command()(ingest)
    app.command()(info)
