"""Run a fine-tuned checkpoint on one split of a store: video and study predictions, and study-level metrics.

The paper's inference: the mean sigmoid score over evenly spaced clips of each video (4 by default), then the mean
over a study's videos. Writes into ``out_dir``::

    predictions_<split>_videos.csv  study_id, video_id, label, score
    predictions_<split>.csv         study_id, label, score (mean over the study's videos)
    metrics_<split>.json            AUROC, AUPR with bootstrap CIs, n studies, the CI rule and the settings

Importing this module does not import torch (``evaluate_checkpoint`` does, when called), so
``prediction_metrics`` serves torch-free reports as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoclr.eval.bootstrap import CI_RULES, BootstrapConfig, bootstrap_ci
from echoclr.eval.predictions import read_predictions
from echoclr.files import file_sha256
from echoclr.jsonio import write_json

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
        batch_size: clips per forward pass; None = the checkpoint's fine-tuning batch size.
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


def load_finetuned(checkpoint: str | Path):
    """Load a fine-tuned classifier and its saved fine-tuning config, matching the weights' keys strictly.

    Args:
        checkpoint: a fine-tuning run folder (its ``checkpoint.pt``) or a checkpoint file.

    Returns:
        ``(model, config, path)``: the ``Classifier`` on the CPU in eval mode, the ``FinetuneConfig`` it was
        trained with, and the resolved checkpoint file.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: the file is not a fine-tuning checkpoint (e.g. a pretraining run).
        StateDictMismatchError: its weights do not match the classifier (the keys are named).
    """
    from echoclr.models import Classifier, Encoder, StateDictMismatchError
    from echoclr.train import FinetuneConfig, config_from_json, load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(
            f"{path} is not an echoclr fine-tuning checkpoint (it lacks 'model' or 'config'); pass the folder or "
            "checkpoint.pt of an `echoclr finetune` run"
        )
    config = config_from_json(json.loads(state["config"]))
    if not isinstance(config, FinetuneConfig):
        raise ValueError(
            f"{path} is a {config.method} pretraining checkpoint, not a fine-tuned classifier: fine-tune it first "
            f"(`echoclr finetune STORE --init {Path(checkpoint)} ...`) and evaluate that run"
        )
    model = Classifier(Encoder(), dropout=config.dropout)
    missing, unexpected = _key_differences(model.state_dict(), state["model"])
    if missing or unexpected:
        raise StateDictMismatchError(
            f"{path}: weights do not match the classifier; missing keys {missing[:10]}, unexpected keys "
            f"{unexpected[:10]}"
        )
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    return model, config, path


def _key_differences(expected: dict, found: dict) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_location: str | Path,
    out_dir: str | Path,
    config: InferenceConfig = InferenceConfig(),
    *,
    overwrite: bool = False,
) -> InferenceResult:
    """Predict one split with a fine-tuned checkpoint and write predictions and metrics.

    The clip length, the input normalisation (Kinetics standardisation for a Kinetics-initialised model) and, by
    default, the clip size come from the checkpoint's saved config.

    Args:
        checkpoint: a fine-tuning run folder or its ``checkpoint.pt``.
        store_location: the echoclr store (path or URL).
        out_dir: folder for ``predictions_<split>_videos.csv``, ``predictions_<split>.csv``, ``metrics_<split>.json``.
        config: split, label, clips per video, device, size and CI settings.
        overwrite: replace existing output files of this split in ``out_dir``.

    Returns:
        ``InferenceResult``; ``metrics`` is the content of ``metrics_<split>.json``.

    Raises:
        FileExistsError: output files of this split exist in ``out_dir`` and ``overwrite`` is False.
        FileNotFoundError: no checkpoint or no store.
        ValueError: not a fine-tuning checkpoint, an unknown label, no labelled video in the split, or a split
            whose studies hold one class only.
        StateDictMismatchError: the checkpoint's weights do not match the classifier.
    """
    import numpy as np

    from echoclr.store import ClipReader, open_store
    from echoclr.train import RuntimeConfig
    from echoclr.train.finetune import predict_videos, write_predictions
    from echoclr.train.runtime import setup_runtime, teardown_runtime

    out = Path(out_dir)
    video_csv, study_csv, metrics_json = output_paths(out, config.split)
    existing = [p.name for p in (video_csv, study_csv, metrics_json) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}: pass --overwrite or choose another --out")

    model, saved, path = load_finetuned(checkpoint)
    label = config.label or saved.label
    size = config.size if config.size is not None else saved.runtime.size
    runtime = setup_runtime(RuntimeConfig(device=config.device, loader_threads=config.threads, size=size))
    store = open_store(store_location)
    reader = ClipReader(store, threads=config.threads)
    try:
        if label not in store.label_names:
            raise ValueError(f"label {label!r} is not in {store.location}; it has {store.label_names}")
        labels = reader.labels(label)
        videos = np.flatnonzero((reader.splits == config.split) & ~np.isnan(labels)).astype(np.int64)
        if len(videos) == 0:
            present = sorted({str(s) for s in reader.splits[~np.isnan(labels)]})
            raise ValueError(
                f"{store.location}: no video of split {config.split!r} has label {label!r}; splits with that "
                f"label: {present}"
            )
        model = model.to(runtime.device, memory_format=runtime.memory_format)
        scores = predict_videos(
            model, reader, videos, clip_len=saved.clip_len, n_clips=config.n_clips,
            batch_size=config.batch_size or saved.batch_size, runtime=runtime, threads=config.threads,
            kinetics=saved.init_kind == "kinetics", size=size,
        )  # (len(videos),) mean clip score per video
        out.mkdir(parents=True, exist_ok=True)
        written = write_predictions(out, config.split, reader, videos, labels, scores)
        assert written == study_csv
    finally:
        reader.close()
        teardown_runtime(runtime)

    metrics = {
        "split": config.split,
        "label": label,
        "model_label": saved.label,
        "init": saved.init,
        "ratio": saved.ratio,
        "checkpoint": str(path),
        "store": str(store.location),
        "n_videos": int(len(videos)),
        "clips_per_video": config.n_clips,
        "clip_len": saved.clip_len,
        "size": size,
        **prediction_metrics(study_csv, config.bootstrap),
    }
    write_json(metrics_json, metrics)
    return InferenceResult(video_csv, study_csv, metrics_json, metrics)
