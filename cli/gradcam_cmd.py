"""``echoclr gradcam``: Grad-CAM overlays of a fine-tuned classifier on stored videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)


def gradcam(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuning output folder or its checkpoint.pt.")],
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG (and GIF) overlays.")],
    videos: Annotated[Optional[str], typer.Option(help="Comma-separated video ids (default: most confident positives).")] = None,
    n: Annotated[int, typer.Option(help="How many videos when --videos is not given.")] = 4,
    split: Annotated[str, typer.Option(help="Split to take videos from when --videos is not given.")] = "test",
    gif: Annotated[bool, typer.Option(help="Also write an animated GIF over the 32 frames.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace overlays of the same videos already in --out.")] = False,
) -> None:
    """Grad-CAM on layer4 over the first 32 frames, max over time, overlaid on the first frame."""
    from echoclr.run.saliency import gradcam_overlays

    chosen = [v.strip() for v in videos.split(",") if v.strip()] if videos else None
    paths = gradcam_overlays(checkpoint, store, out, video_ids=chosen, n=n, split=split, device=device, gif=gif,
                             overwrite=overwrite)
    for path in paths:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command()(gradcam)
