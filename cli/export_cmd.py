"""``echoclr export``: a run's encoder as torchvision r3d_18 weights (safetensors + .pth) and a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def export(
    run: Annotated[Path, typer.Argument(help="Pretraining or fine-tuning run folder, or its checkpoint.pt.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for encoder.safetensors, encoder.pth, model_card.json.")],
    store: Annotated[
        str | None, typer.Option(help="The training store (path or URL): its summary goes into the model card.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out (only its three files).")] = False,
) -> None:
    """Export the encoder so that stock torchvision r3d_18 (fc = Identity) loads it with strict=True."""
    from echoclr.models import export_encoder
    from echoclr.store import StoreError, open_store

    try:
        summary = None if store is None else open_store(store).summary()
        result = export_encoder(run, out, store_summary=summary, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, StoreError, ValueError) as exc:  # weight mismatches are ValueErrors
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"wrote {result.safetensors}, {result.pth} and {result.card} ({result.card_data['method']})")


def register(app: typer.Typer) -> None:
    app.command()(export)
