"""``echoclr demo``: the whole EchoCLR study on the built-in synthetic echo dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markdown import Markdown

from echoclr.cli.progress import progress_callback
from echoclr.cli.train_cmds import parse_ratios

console = Console(stderr=True)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the synthetic data, the store, the runs and the report.")],
    studies: Annotated[int, typer.Option(help="Synthetic studies to generate.")] = 160,
    label: Annotated[str, typer.Option(help="Label to learn: lvh or severe_as.")] = "lvh",
    ratios: Annotated[str, typer.Option(help="Training ratios to fine-tune at, comma-separated.")] = "0.1,0.25",
    pretrain_steps: Annotated[Optional[int], typer.Option(help="EchoCLR pretraining steps (default: the preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the data and every random choice.")] = 0,
    workers: Annotated[int, typer.Option(help="Ingest worker processes.")] = 2,
    device: Annotated[str, typer.Option(help="'auto' (the GPU preset when CUDA is available) or 'cpu'.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Start over: delete what a previous demo left in --out.")] = False,
) -> None:
    """Synthesise echoes, ingest, pretrain EchoCLR, fine-tune at low label ratios vs random init, evaluate, report.

    A rerun resumes: finished stages and runs are skipped.
    """
    from echoclr.demo import DemoConfig, run_demo

    config = DemoConfig(out=out, n_studies=studies, label=label, seed=seed, workers=workers, device=device,
                        ratios=parse_ratios(ratios),
                        pretrain_steps=pretrain_steps)
    with progress_callback("demo") as progress:
        result = run_demo(config, overwrite=overwrite, progress=progress, log=console.print)
    out_console = Console()
    if result.results_md is not None:
        out_console.print(Markdown(result.results_md.read_text()))
    if result.headline:
        h = result.headline
        p = "n/a" if h["p_value"] is None else f"{h['p_value']:.3g}"
        out_console.print(
            f"[bold]At {h['ratio']:.0%} labels ({h['n_test_studies']} test studies): EchoCLR AUROC "
            f"{h['echoclr_auroc']:.3f} [{h['echoclr_ci'][0]:.3f}, {h['echoclr_ci'][1]:.3f}] vs random "
            f"{h['random_auroc']:.3f} [{h['random_ci'][0]:.3f}, {h['random_ci'][1]:.3f}], one-sided p = {p}[/bold]"
        )
    out_console.print(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
