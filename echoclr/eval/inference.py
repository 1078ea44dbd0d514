"""Inference settings, output layout and study-level metrics of a fine-tuned checkpoint's predictions.

The paper's inference: the mean sigmoid score over evenly spaced clips of each video (4 by default), then the mean
over a study's videos. Writes into ``out_dir``::

    predictions_<split>_videos.csv  study_id, video_id, label, score
    predictions_<split>.csv         study_id, label, score (mean over the study's videos)
    metrics_<split>.json            AUROC, AUPR with bootstrap CIs, n studies, the CI rule and the settings

Torch-free: running the checkpoint (``echoclr.run.evaluate.evaluate_checkpoint``) belongs to the orchestration layer,
which loads the checkpoint and the store; ``prediction_metrics`` serves reports anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoclr.eval.bootstrap import CI_RULES, BootstrapConfig, bootstrap_ci
from echoclr.eval.predictions import read_predictions
from echoclr.files import file_sha256

SPLITS = ("train", "val", "test", "ext_test")


def ci_description(config: BootstrapConfig) -> str:
    """One line saying how the intervals were made, e.g. for a report's caption."""
    low, high, level = CI_RULES[config.ci_rule]
    sampling = "stratified by label" if config.stratified else "all studies with replacement"
    return (
        f"{round(level * 100)}% percentile interval ({low:g}-{high:g}th percentiles) over {config.n_boot} "
        f"study-level bootstrap resamples ({sampling}), seed {config.seed}"
    )


def prediction_metrics(predictions_csv: str | Path, config: BootstrapConfig = BootstrapConfig()) -> dict[str, Any]:
    """Study-level AUROC/AUPR with bootstrap CIs of one prediction CSV, as a JSON-ready dict.

    Args:
        predictions_csv: CSV with ``study_id, label, score`` (and optionally ``video_id``; rows of a study are
            averaged), e.g. ``predictions_test.csv``.
        config: bootstrap settings of the CIs.

    Returns:
        ``auroc``, ``auroc_ci`` ([low, high]), ``aupr``, ``aupr_ci``, ``n_studies``, ``n_positive``, ``n_boot``,
        ``n_degenerate``, ``ci_level``, ``ci_rule``, ``stratified``, ``seed``, ``ci_method`` (a sentence),
        ``predictions`` (the file name) and ``predictions_sha256`` (to tell whether a cached result is stale).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the CSV is malformed, or the studies hold one class only (AUROC is undefined); the message
            names the file.
    """
    path = Path(predictions_csv)
    predictions = read_predictions(path)
    try:
        metrics = bootstrap_ci(predictions.labels, predictions.scores, config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return {
        **metrics.to_dict(),
        "seed": config.seed,
        "ci_method": ci_description(config),
        "predictions": path.name,
        "predictions_sha256": file_sha256(path),
    }


@dataclass(frozen=True)
class InferenceConfig:
    """How to run a fine-tuned checkpoint on a split.

    Attributes:
        split: the store split to predict (``test``, ``ext_test``, ``val`` or ``train``).
        label: the store's label column to score against; None = the label the checkpoint was fine-tuned on.
        n_clips: evenly spaced clips per video (the paper: 4); the video score is their mean.
        batch_size: clips per forward pass; None = the checkpoint's fine-tuning batch size, at least 32.
        device: ``auto``, ``cpu`` or ``cuda``.
        size: resize clips to ``size`` px; None = the size the checkpoint was fine-tuned at (its saved config).
        threads: reader/loader CPU threads.
        bootstrap: CI settings of ``metrics_<split>.json``.
    """

    split: str = "test"
    label: str | None = None
    n_clips: int = 4
    batch_size: int | None = None
    device: str = "auto"
    size: int | None = None
    threads: int = 4
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.label is not None and not self.label:
            raise ValueError("label must name a label column of the store, or be None for the checkpoint's label")
        if self.n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {self.n_clips}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.size is not None and not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024] px or None, got {self.size}")


@dataclass(frozen=True)
class InferenceResult:
    """Where ``evaluate_checkpoint`` wrote its outputs, and the metrics it computed."""

    video_predictions: Path
    study_predictions: Path
    metrics_json: Path
    metrics: dict[str, Any]


def output_paths(out_dir: str | Path, split: str) -> tuple[Path, Path, Path]:
    """``(predictions_<split>_videos.csv, predictions_<split>.csv, metrics_<split>.json)`` in ``out_dir``."""
    out = Path(out_dir)
    return out / f"predictions_{split}_videos.csv", out / f"predictions_{split}.csv", out / f"metrics_{split}.json"
