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
    from echoclr.eval.embed import EmbedConfig, embed_store
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


def register(app: typer.Typer) -> None:
    app.command()(embed)
