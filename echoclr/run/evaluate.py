"""Run a fine-tuned checkpoint on one split of a store: video and study predictions, and study-level metrics.

The paper's inference: the mean sigmoid score over evenly spaced clips of each video (4 by default), then the mean
over a study's videos; the outputs and metrics are those of :mod:`echoclr.eval.inference`.
"""

from __future__ import annotations

import json
from pathlib import Path

from echoclr.eval.inference import InferenceConfig, InferenceResult, output_paths, prediction_metrics
from echoclr.jsonio import write_json


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
    from echoclr.train.batches import eval_batch_size
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
            batch_size=config.batch_size or eval_batch_size(saved.batch_size), runtime=runtime, threads=config.threads,
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
