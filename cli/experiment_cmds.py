"""``echoclr experiment``: the paper's label-titration grid (pretrain, fine-tune, evaluate, report). Thin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from echoclr.cli.eval_cmds import CIRuleOption

console = Console(stderr=True)

PAPER_RATIOS_TEXT = "0.01,0.05,0.1,0.25,0.5,1.0"


def _items(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if items in ((), ("none",)):
        return ()
    return items


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in _items(text))
    except ValueError:
        raise ValueError(f"--ratios must be comma-separated numbers, e.g. {PAPER_RATIOS_TEXT}; got {text!r}") from None


def _log(record: dict) -> None:
    event = record.get("event")
    if event == "train":
        keys = ("stage", "epoch", "step", "loss", "train_loss", "val_loss", "lr")
        parts = [f"{k}={record[k]:.4g}" if isinstance(record[k], float) else f"{k}={record[k]}"
                 for k in keys if record.get(k) is not None]
        console.print("  " + " ".join(parts))
    elif event in ("pretrain", "finetune"):
        what = record.get("method") or f"{record.get('init')} ratio {record.get('ratio'):g}" + (
            f" repeat {record['repeat']}" if record.get("repeat") else "")
        console.print(f"[bold]{event} {what}[/bold]: {record['status']}")
    elif event == "metrics" and record["status"] == "computed":
        console.print(f"metrics {record['init']} ratio {record['ratio']:g} repeat {record.get('repeat', 0)} "
                      f"{record['split']}: "
                      f"AUROC {record['auroc']:.3f}")


def experiment(
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL).")],
    label: Annotated[str, typer.Option(help="Label column to classify, e.g. lvh or severe_as.")],
    out: Annotated[Path, typer.Option("--out", help="Experiment folder (runs, tables, plots, report).")],
    methods: Annotated[
        str, typer.Option(help="SSL methods to pretrain and fine-tune from, comma-separated ('none' for none).")
    ] = "simclr,mi-simclr,echoclr",
    inits: Annotated[
        str, typer.Option(help="Other inits: random and/or kinetics:WEIGHTS.pth, comma-separated ('none').")
    ] = "random",
    ratios: Annotated[str, typer.Option(help="Training ratios (fractions of labelled studies).")] = PAPER_RATIOS_TEXT,
    reference: Annotated[str, typer.Option(help="Init tested to beat each other init (one-sided).")] = "echoclr",
    splits: Annotated[str, typer.Option(help="Evaluation splits, reported when labelled.")] = "test,ext_test",
    pretrain_epochs: Annotated[
        Optional[int], typer.Option(min=1, help="Pretraining epochs (default: paper's, 300 / 520 for SimCLR).")
    ] = None,
    max_pretrain_steps: Annotated[
        Optional[int], typer.Option(min=1, help="Stop each pretraining after this many steps.")
    ] = None,
    pretrain_batch_size: Annotated[int, typer.Option(min=1, help="Pretraining global batch (pairs).")] = 392,
    pretrain_lr: Annotated[float, typer.Option(help="Pretraining Adam learning rate (the paper's: 0.1, which "
                                                    "diverged in this project's short runs).")] = 1e-4,
    pretrain_clip_len: Annotated[int, typer.Option(min=1, help="Pretraining clip frames K.")] = 4,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature (paper 0.5).")] = 0.5,
    lr: Annotated[Optional[float], typer.Option(help="Fixed fine-tuning lr (default: the paper's rule).")] = None,
    clip_len: Annotated[int, typer.Option(min=1, help="Fine-tuning clip frames.")] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Fine-tuning global batch (clips).")] = 88,
    max_epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epoch limit.")] = 30,
    patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience (epochs).")] = 5,
    class_weights: Annotated[bool, typer.Option(help="Weight positives by negatives/positives.")] = False,
    eval_clips: Annotated[int, typer.Option(min=1, help="Evenly spaced clips per video at inference.")] = 4,
    seed: Annotated[int, typer.Option(min=0, help="Seed of pretraining and fine-tuning.")] = 0,
    subset_seed: Annotated[int, typer.Option(min=0, help="Seed of the nested titration subsets.")] = 0,
    repeats: Annotated[int, typer.Option(min=1, help=(
        "Subset draws per ratio: repeat k fine-tunes with subset seed and seed + k; the table adds mean, SD, range "
        "and the fraction of repeats where the reference wins. Raising it keeps finished repeats."))] = 1,
    n_boot: Annotated[int, typer.Option("--n-boot", min=2, help="Study-level bootstrap resamples.")] = 10_000,
    boot_seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap resamples.")] = 0,
    ci_rule: Annotated[
        CIRuleOption, typer.Option("--ci-rule", help="paper: 2.5-97.5 percentiles (95%); authors: 5-95 (90%).")
    ] = CIRuleOption.paper,
    device: Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")] = "auto",
    size: Annotated[Optional[int], typer.Option(help="Downsample clips to SIZE px (CPU preset).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="Reader and DALI CPU threads.")] = 4,
) -> None:
    """Run the label-titration grid: inits x ratios, with CIs, paired tests, plots and a report. Resumable."""
    from echoclr.eval import BootstrapConfig
    from echoclr.run import ExperimentConfig, run_experiment
    from echoclr.train import FinetuneConfig, PretrainConfig, RuntimeConfig

    runtime = RuntimeConfig(device=device, loader_threads=threads, size=size)
    config = ExperimentConfig(
        finetune=FinetuneConfig(label=label, lr=lr, clip_len=clip_len, batch_size=batch_size,
                                max_epochs=max_epochs, patience=patience, class_weights=class_weights,
                                eval_clips=eval_clips, seed=seed, subset_seed=subset_seed, runtime=runtime),
        methods=_items(methods),
        inits=_items(inits),
        ratios=_ratios(ratios),
        pretrain=PretrainConfig(clip_len=pretrain_clip_len, temperature=temperature, lr=pretrain_lr,
                                batch_size=pretrain_batch_size, epochs=pretrain_epochs, seed=seed,
                                runtime=RuntimeConfig(device=device, loader_threads=threads, size=size,
                                                      max_steps=max_pretrain_steps)),
        bootstrap=BootstrapConfig(n_boot=n_boot, seed=boot_seed, ci_rule=ci_rule.value),
        reference=reference,
        splits=_items(splits),
        repeats=repeats,
    )
    result = run_experiment(store, out, config, on_log=_log)
    typer.echo(result.results_md.read_text())
    console.print(f"trained {len(result.trained)} runs, skipped {len(result.skipped)} finished ones; "
                  f"report: {result.report_md} ({result.report_html.name}), table: {result.results_csv}")


def register(app: typer.Typer) -> None:
    """Attach ``experiment`` to the top-level app."""
    app.command()(experiment)
