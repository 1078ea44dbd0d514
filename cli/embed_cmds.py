"""Frozen-encoder evidence: ``echoclr embed`` (embeddings .npz) and ``echoclr probe`` (linear/kNN probes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def embed(
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL).")],
    out: Annotated[Path, typer.Option("--out", help="Output .npz (keys: see `echoclr.eval.embed`).")],
    init: Annotated[str, typer.Option(help="random, kinetics:WEIGHTS.pth, or a pretraining/fine-tuning run "
                                           "folder or checkpoint.")] = "random",
    splits: Annotated[str, typer.Option(help="Comma-separated splits to embed.")] = "train,val,test,ext_test",
    size: Annotated[Optional[int], typer.Option(help="Downsample clips to SIZE px; default: store size.")] = None,
    clips: Annotated[int, typer.Option(help="Evenly spaced clips per video (their mean is the embedding).")] = 4,
    clip_len: Annotated[int, typer.Option(help="Frames per clip.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Clips per forward pass.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of a random-init encoder.")] = 0,
    device: Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")] = "auto",
    threads: Annotated[int, typer.Option(help="Reader and DALI CPU threads.")] = 4,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Per-video and per-study embeddings of a frozen encoder, with ids, splits and labels, in one .npz."""
    from echoclr.cli.progress import progress_callback
    from echoclr.eval.embed import EmbedConfig
    from echoclr.run.embed import embed_store
    from echoclr.models import StateDictMismatchError

    if out.exists() and not overwrite:
        _fail(FileExistsError(f"{out} exists: pass --overwrite to replace it or choose another --out"))
    if out.suffix != ".npz":
        _fail(ValueError(f"--out must end in .npz, got {out}"))
    try:
        config = EmbedConfig(init=init, splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
                             clip_len=clip_len, n_clips=clips, size=size, batch_size=batch_size, seed=seed,
                             device=device, threads=threads)
        with progress_callback("embedding clips") as progress:
            result = embed_store(store, config, progress=progress)
        result.save(out)
    except (ValueError, FileNotFoundError, KeyError, StateDictMismatchError) as exc:
        _fail(exc)
    console.print(f"{len(result.video_id)} videos, {len(result.study_id)} studies, "
                  f"{result.video_embedding.shape[1]}-d embeddings -> {out}")


def probe(
    embeddings: Annotated[Path, typer.Argument(help="An `echoclr embed` .npz file.")],
    label: Annotated[str, typer.Option(help="Study label to predict, e.g. lvh.")],
    ratios: Annotated[str, typer.Option(help="Comma-separated training ratios.")] = "0.01,0.1,1.0",
    repeats: Annotated[int, typer.Option(help="Nested titration subsets per ratio (subset seeds SEED..).")] = 20,
    seed: Annotated[int, typer.Option(help="First subset seed (= finetune --subset-seed).")] = 0,
    probes: Annotated[str, typer.Option(help="Comma-separated probes: linear, knn.")] = "linear,knn",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the median repeat's test CI.")] = 2000,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object (keys: ProbeResult.to_json).")] = False,
) -> None:
    """Linear and kNN probes of frozen study embeddings over repeated nested titration subsets, scored on test."""
    import json

    from echoclr.eval.bootstrap import BootstrapConfig
    from echoclr.eval.embed import load_embeddings
    from echoclr.eval.probe import ProbeConfig, run_probes

    try:
        values = tuple(float(r) for r in ratios.split(",") if r.strip())
    except ValueError:
        _fail(ValueError(f"--ratios must be comma-separated numbers, got {ratios!r}"))
    try:
        config = ProbeConfig(label=label, ratios=values, repeats=repeats, seed=seed,
                             probes=tuple(p.strip() for p in probes.split(",") if p.strip()),
                             bootstrap=BootstrapConfig(n_boot=n_boot))
        result = run_probes(load_embeddings(embeddings), config)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if json_:
        typer.echo(json.dumps(result.to_json(), indent=1))
        return
    _print_probe_table(result, embeddings)


def _print_probe_table(result, source: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{result.label}: probes on {source.name} ({result.n_test_studies} test studies, "
                        f"{result.n_test_positive} positive)")
    for column in ("ratio", "probe", "studies", "AUROC mean [spread]", "median AUROC [test CI]",
                   "AUPR mean [spread]", "one-class"):
        table.add_column(column)
    for s in result.summaries:
        ci = "n/a (one class)" if s.median_auroc_ci is None else \
            f"{s.median_auroc:.3f} [{s.median_auroc_ci[0]:.3f}, {s.median_auroc_ci[1]:.3f}]"
        table.add_row(f"{s.ratio:g}", s.probe, str(s.n_train_studies),
                      f"{s.auroc_mean:.3f} [{s.auroc_spread[0]:.3f}, {s.auroc_spread[1]:.3f}]", ci,
                      f"{s.aupr_mean:.3f} [{s.aupr_spread[0]:.3f}, {s.aupr_spread[1]:.3f}]",
                      f"{s.n_degenerate}/{s.n_repeats}")
    Console().print(table)
    Console().print("spread: 2.5-97.5 percentiles over repeats; test CI: 95% study-level bootstrap of the median "
                    "repeat; a one-class subset scores a constant (AUROC 0.5) and stays in the mean")


def register(app: typer.Typer) -> None:
    app.command()(embed)
    app.command()(probe)
