"""Evaluation commands: ``echoclr eval run`` and ``echoclr eval compare`` (more attach to ``eval_app``)."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

eval_app = typer.Typer(
    help="Evaluate study-level predictions: AUROC/AUPR, bootstrap CIs, paired tests.",
    no_args_is_help=True,
)


class CIRuleOption(str, Enum):
    paper = "paper"
    authors = "authors"


def register(app: typer.Typer) -> None:
    """Attach the ``eval`` command group to the top-level app."""
    app.add_typer(eval_app, name="eval")


def _finite_or_none(obj):
    # JSON has no inf/NaN; a z of +-inf (zero bootstrap spread) is written as null
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    level = f"{round(result.a.ci_level * 100)}%"
    rule = " (authors' 5-95 percentile rule)" if result.a.ci_rule == "authors" else ""
    table = Table(title=f"Study-level metrics, {level} bootstrap CI{rule}")
    for col in ("model", "file", "studies (pos)", f"AUROC [{level} CI]", f"AUPR [{level} CI]"):
        table.add_column(col)
    for name, m, src in (("A", result.a, result.source_a), ("B", result.b, result.source_b)):
        table.add_row(
            name,
            src,
            f"{m.n_studies} ({m.n_positive})",
            f"{m.auroc:.3f} [{m.auroc_ci[0]:.3f}, {m.auroc_ci[1]:.3f}]",
            f"{m.aupr:.3f} [{m.aupr_ci[0]:.3f}, {m.aupr_ci[1]:.3f}]",
        )
    console = Console()
    console.print(table)
    t = result.test
    console.print(
        f"One-sided paired bootstrap test, H1: AUROC(A) > AUROC(B): "
        f"diff = {t.auroc_diff:+.4f}, z = {t.z:.3f}, p = {t.p_value:.3g} "
        f"({t.n_boot} resamples, {'stratified' if t.stratified else 'unstratified'})"
    )
    skipped = result.a.n_degenerate
    if skipped or t.n_degenerate:
        console.print(
            f"Skipped single-class resamples: {skipped} of {result.a.n_boot} for the CIs, "
            f"{t.n_degenerate} for the test."
        )


@eval_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="Prediction CSV of model A (study_id, label, score[, video_id]).")],
    b: Annotated[Path, typer.Argument(help="Prediction CSV of model B, same studies and labels.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    n_boot: Annotated[int, typer.Option("--n-boot", min=2, help="Study-level bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed of the resamples.")] = 0,
    stratified: Annotated[
        Optional[bool],
        typer.Option(
            "--stratified/--no-stratified",
            help="Resample positives and negatives separately, for CIs and test. Default: CIs "
            "unstratified (the paper), test stratified (pROC's roc.test default).",
        ),
    ] = None,
    ci_rule: Annotated[
        CIRuleOption,
        typer.Option("--ci-rule", help="paper: 2.5-97.5 percentiles (95%); authors: 5-95 (a 90% interval)."),
    ] = CIRuleOption.paper,
    intersect: Annotated[
        bool,
        typer.Option(
            "--intersect", help="Compare on the studies both files share instead of requiring equal sets."
        ),
    ] = False,
) -> None:
    """AUROC/AUPR with bootstrap CIs for A and B, and a one-sided paired test that A beats B."""
    from echoclr.eval import BootstrapConfig, compare_predictions, read_predictions

    config = BootstrapConfig(
        n_boot=n_boot, seed=seed, stratified=bool(stratified), ci_rule=ci_rule.value
    )
    result = compare_predictions(
        read_predictions(a),
        read_predictions(b),
        config,
        test_stratified=True if stratified is None else stratified,
        intersect=intersect,
    )
    if json_output:
        typer.echo(json.dumps(_finite_or_none(result.to_dict())))
    else:
        _print_table(result)


@eval_app.command("run")
def run(
    checkpoint: Annotated[
        Path, typer.Argument(help="A fine-tuning run folder (`echoclr finetune --out`) or its checkpoint.pt.")
    ],
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL) to predict.")],
    label: Annotated[
        Optional[str], typer.Option(help="Label column to score against (default: the checkpoint's label).")
    ] = None,
    split: Annotated[str, typer.Option(help="Store split to predict: test, ext_test, val or train.")] = "test",
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder (default: <checkpoint folder>/eval).")
    ] = None,
    clips: Annotated[int, typer.Option(min=1, help="Evenly spaced clips per video; the score is their mean.")] = 4,
    batch_size: Annotated[
        Optional[int], typer.Option(min=1, help="Clips per forward pass (default: the fine-tuning batch, at least 32).")
    ] = None,
    device: Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")] = "auto",
    size: Annotated[
        Optional[int], typer.Option(help="Resize clips to SIZE px (default: the size the model was tuned at).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="Reader and loader CPU threads.")] = 4,
    n_boot: Annotated[int, typer.Option("--n-boot", min=2, help="Study-level bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed of the resamples.")] = 0,
    ci_rule: Annotated[
        CIRuleOption,
        typer.Option("--ci-rule", help="paper: 2.5-97.5 percentiles (95%); authors: 5-95 (a 90% interval)."),
    ] = CIRuleOption.paper,
    overwrite: Annotated[bool, typer.Option(help="Replace this split's outputs already in --out.")] = False,
) -> None:
    """Predict a split with a fine-tuned checkpoint: video/study prediction CSVs and AUROC/AUPR with CIs."""
    from echoclr.eval import BootstrapConfig, InferenceConfig
    from echoclr.run import evaluate_checkpoint

    if out is None:
        out = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "eval"
    config = InferenceConfig(
        split=split, label=label, n_clips=clips, batch_size=batch_size, device=device, size=size,
        threads=threads, bootstrap=BootstrapConfig(n_boot=n_boot, seed=seed, ci_rule=ci_rule.value),
    )
    result = evaluate_checkpoint(checkpoint, store, out, config, overwrite=overwrite)
    m = result.metrics
    level = f"{round(m['ci_level'] * 100)}%"
    typer.echo(
        f"{m['split']}: {m['n_studies']} studies ({m['n_positive']} positive), {m['n_videos']} videos; "
        f"AUROC {m['auroc']:.3f} [{level} CI {m['auroc_ci'][0]:.3f}, {m['auroc_ci'][1]:.3f}], "
        f"AUPR {m['aupr']:.3f} [{m['aupr_ci'][0]:.3f}, {m['aupr_ci'][1]:.3f}]"
    )
    typer.echo(f"wrote {result.video_predictions}, {result.study_predictions}, {result.metrics_json}")
