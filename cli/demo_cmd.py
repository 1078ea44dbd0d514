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
    ratios: Annotated[str, typer.Option(help="Training ratios to fine-tune at, comma-separated.")] = "0.1",
    repeats: Annotated[int, typer.Option(help="Nested subset draws fine-tuned per ratio and init.")] = 3,
    probe_repeats: Annotated[int, typer.Option(help="Subset draws of the linear/kNN probes per ratio.")] = 20,
    ablation: Annotated[bool, typer.Option(help="Also pretrain SimCLR and MI-SimCLR: the four-way ordering.")] = False,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="Pretraining steps per method (default: the preset's).")] = None,
    finetune_epochs: Annotated[Optional[int], typer.Option(help="Fine-tuning epoch limit (default: the preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the data and every random choice.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes that render the synthetic videos and ingest them.")] = 2,
    device: Annotated[str, typer.Option(help="'auto' (the GPU preset when CUDA is available) or 'cpu'.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Start over: delete what a previous demo left in --out.")] = False,
) -> None:
    """Synthesise echoes, ingest, pretrain EchoCLR (--ablation: SimCLR and MI-SimCLR too), fine-tune over subset
    draws vs random init, probe frozen embeddings, evaluate, report.

    A rerun resumes: finished stages and runs are skipped; more --repeats or --ablation add runs to the same folder.
    """
    from echoclr.run.demo import DemoConfig, run_demo

    config = DemoConfig(out=out, n_studies=studies, label=label, seed=seed, workers=workers, device=device,
                        ratios=parse_ratios(ratios), repeats=repeats, probe_repeats=probe_repeats,
                        ablation=ablation, pretrain_steps=pretrain_steps, finetune_epochs=finetune_epochs)
    with progress_callback("demo") as progress:
        result = run_demo(config, overwrite=overwrite, progress=progress, log=console.print)
    out_console = Console()
    if result.results_md is not None:
        out_console.print(Markdown(result.results_md.read_text()))
    if result.headline:
        h = result.headline
        order = " > ".join(f"{i} {v['auroc_mean']:.3f} ± {v['auroc_sd']:.3f}" for i, v in h["inits"].items())
        out_console.print(f"[bold]At {h['ratio']:.0%} labels ({h['n_test_studies']} test studies, {h['n_repeats']} "
                          f"subset draws), mean AUROC ± SD: {order}[/bold]")
    out_console.print(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
