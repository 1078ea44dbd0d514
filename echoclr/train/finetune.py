"""Fine-tuning on one binary label at one training ratio: the paper's learning-rate rule, early stopping on the
validation loss with the best weights restored, and video/study predictions for every evaluation split.

Layout of ``out_dir``::

    config.json                     the resolved config
    lr_<lr>/checkpoint.pt           per learning rate: latest state (resume) and the best weights so far
    lr_<lr>/history.json            per-epoch train/val loss; ``done: true`` once early stopping ended it
    checkpoint.pt                   the chosen model (best validation loss over the learning rates)
    predictions_<split>_videos.csv  study_id, video_id, label, score
    predictions_<split>.csv         study_id, label, score (mean over the study's videos)
    summary.json                    chosen lr, best epoch, val loss, number of studies/videos used
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoclr.data import SamplerConfig, plan_epoch
from echoclr.models import Classifier, Encoder, kinetics_init, load_encoder_state
from echoclr.store import ClipReader, open_store
from echoclr.train.batches import labelled_batches, mean_clip_outputs
from echoclr.train.checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    load_checkpoint,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from echoclr.train.config import FinetuneConfig
from echoclr.train.runtime import Runtime, setup_runtime, teardown_runtime
from echoclr.train.subsets import titration_studies

EVAL_SPLITS = ("val", "test", "ext_test")


@dataclass
class FinetuneResult:
    out_dir: Path
    lr: float
    best_epoch: int
    val_loss: float
    predictions: dict[str, Path]


def build_encoder(init: str) -> Encoder:
    """An encoder initialised as ``init`` says: ``random``, ``kinetics:PATH`` or an SSL run folder / checkpoint.

    Raises:
        FileNotFoundError: the weights file or run folder does not exist (the message says where to get it).
        StateDictMismatchError: the file's keys do not match the encoder (named in the message).
    """
    if init == "random":
        return Encoder()
    if init.startswith("kinetics:"):
        return kinetics_init(init.removeprefix("kinetics:"))
    path = resolve_checkpoint(init)
    state = load_checkpoint(path)
    encoder = Encoder()
    load_encoder_state(encoder, state["model"] if "model" in state else state, source=str(path))
    return encoder


def _labelled(reader: ClipReader, label: str, split: str) -> np.ndarray:
    values = reader.labels(label)
    return np.flatnonzero((reader.splits == split) & ~np.isnan(values)).astype(np.int64)


def predict_videos(
    model: torch.nn.Module,
    reader: ClipReader,
    videos: np.ndarray,
    *,
    clip_len: int,
    n_clips: int,
    batch_size: int,
    runtime: Runtime,
    threads: int,
    kinetics: bool,
    size: int | None,
) -> np.ndarray:
    """Mean sigmoid score over ``n_clips`` evenly spaced clips of each video: ``float64 (len(videos),)``."""
    model.eval()
    return mean_clip_outputs(lambda x: torch.sigmoid(model(x).float()), reader, videos, clip_len=clip_len,
                             n_clips=n_clips, batch_size=batch_size, runtime=runtime, threads=threads,
                             kinetics=kinetics, size=size)


def _bce(scores: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def finetune(
    store_location: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig,
    *,
    overwrite: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune, pick the learning rate by validation loss, restore the best epoch, write predictions.

    A rerun with the same ``out_dir`` resumes: finished learning rates are skipped and an interrupted one
    continues from its last finished epoch.

    Raises:
        FileExistsError: ``out_dir`` holds a run with another config and ``overwrite`` is False.
        ValueError: no labelled videos in the train or val split.
    """
    out_dir = Path(out_dir)
    runtime = setup_runtime(config.runtime)
    try:
        return _finetune(store_location, out_dir, config, runtime, overwrite=overwrite, on_log=on_log)
    finally:
        teardown_runtime(runtime)


def _finetune(store_location, out_dir: Path, config: FinetuneConfig, runtime: Runtime, *, overwrite, on_log):
    saved_config = out_dir / CONFIG_NAME
    if saved_config.exists() and not overwrite:
        if json.loads(saved_config.read_text()) != config.to_json():
            raise FileExistsError(
                f"{out_dir} holds a fine-tuning run with another config: pass --overwrite or choose another --out"
            )
    elif overwrite and out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved_config, config.to_json())

    store = open_store(store_location)
    reader = ClipReader(store, threads=config.runtime.loader_threads)
    try:
        labels = reader.labels(config.label)
        train_all = _labelled(reader, config.label, "train")
        val = _labelled(reader, config.label, "val")
        if len(train_all) == 0 or len(val) == 0:
            raise ValueError(
                f"{store.location}: label {config.label!r} needs labelled videos in both train and val splits "
                f"(found {len(train_all)} and {len(val)})"
            )
        train_studies = [reader.study_ids[s] for s in np.unique(reader.study_of_video[train_all])]
        chosen = set(titration_studies(train_studies, config.ratio, config.subset_seed))
        train = np.array([v for v in train_all if reader.study_ids[reader.study_of_video[v]] in chosen], np.int64)

        trials = {}
        for lr in config.learning_rates():
            trials[lr] = _train_one_lr(reader, labels, train, val, config, lr, out_dir / f"lr_{lr:g}", runtime, on_log)
        best_lr = min(trials, key=lambda lr: trials[lr]["best_val_loss"])
        best = trials[best_lr]
        model = _classifier(config, runtime)
        model.load_state_dict(load_checkpoint(out_dir / f"lr_{best_lr:g}" / CHECKPOINT_NAME)["best_model"])
        if runtime.is_main:
            save_checkpoint(out_dir / CHECKPOINT_NAME, {"model": model.state_dict(), "config": json.dumps(config.to_json())})

        predictions = {}
        kinetics = config.init_kind == "kinetics"
        for split in EVAL_SPLITS:
            videos = _labelled(reader, config.label, split)
            if len(videos) == 0 or not runtime.is_main:
                continue
            scores = predict_videos(model, reader, videos, clip_len=config.clip_len, n_clips=config.eval_clips,
                                    batch_size=config.batch_size, runtime=runtime,
                                    threads=config.runtime.loader_threads, kinetics=kinetics,
                                    size=config.runtime.size)
            predictions[split] = write_predictions(out_dir, split, reader, videos, labels, scores)
        summary = {
            "label": config.label, "init": config.init, "ratio": config.ratio, "lr": best_lr,
            "best_epoch": best["best_epoch"], "val_loss": best["best_val_loss"],
            "n_train_studies": len(chosen), "n_train_videos": int(len(train)), "n_val_videos": int(len(val)),
            "trials": {f"{lr:g}": {"best_val_loss": t["best_val_loss"], "best_epoch": t["best_epoch"]}
                       for lr, t in trials.items()},
        }
        if runtime.is_main:
            write_json(out_dir / "summary.json", summary)
        return FinetuneResult(out_dir, best_lr, best["best_epoch"], best["best_val_loss"], predictions)
    finally:
        reader.close()


def _classifier(config: FinetuneConfig, runtime: Runtime) -> Classifier:
    torch.manual_seed(config.seed)
    model = Classifier(build_encoder(config.init), dropout=config.dropout)
    return model.to(runtime.device, memory_format=runtime.memory_format)


def _train_one_lr(reader, labels, train, val, config: FinetuneConfig, lr: float, trial_dir: Path, runtime: Runtime,
                  on_log) -> dict[str, Any]:
    history_path = trial_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else {"epochs": [], "done": False}
    if history["done"]:
        return history
    model = _classifier(config, runtime)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, **runtime.adam_options)
    best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start_epoch = 0
    checkpoint_path = trial_dir / CHECKPOINT_NAME
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_model = state["best_model"]
        start_epoch = int(state["progress"]["epoch"])
        set_rng_state(state["rng"])
        history["epochs"] = history["epochs"][:start_epoch]
    train_labels = labels[train]
    pos_weight = None
    if config.class_weights:
        n_pos = float(train_labels.sum())
        n_neg = float(len(train_labels) - n_pos)
        pos_weight = torch.tensor(n_neg / max(n_pos, 1.0), device=runtime.device)
    sampler = SamplerConfig(mode="single", clip_len=config.clip_len, seed=config.seed, reorder=False)
    kinetics = config.init_kind == "kinetics"
    local_batch = max(1, config.batch_size // runtime.world_size)
    study_of_train = reader.study_of_video[train]
    frames_of_train = reader.n_frames[train]

    for epoch in range(start_epoch, config.max_epochs):
        plan = plan_epoch(sampler, study_of_train, frames_of_train, epoch=epoch, rank=runtime.rank,
                          world_size=runtime.world_size)
        model.train()
        losses = []
        for x, y in labelled_batches(reader, plan, train, label=config.label, clip_len=config.clip_len,
                                     batch_size=local_batch, seed=config.seed, epoch=epoch, runtime=runtime,
                                     threads=config.runtime.loader_threads, kinetics=kinetics,
                                     size=config.runtime.size):
            # forward
            with runtime.autocast():
                logits = model(x)
            # loss
            loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)
            # backward
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # step
            optimizer.step()
            losses.append(float(loss.detach()))
        val_scores = predict_videos(model, reader, val, clip_len=config.clip_len, n_clips=config.eval_clips,
                                    batch_size=config.batch_size, runtime=runtime,
                                    threads=config.runtime.loader_threads, kinetics=kinetics,
                                    size=config.runtime.size)
        val_loss = _bce(val_scores, labels[val])
        record = {"lr": lr, "epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan,
                  "val_loss": val_loss}
        history["epochs"].append(record)
        # log
        if on_log and runtime.is_main:
            on_log(record)
        best_epoch = int(np.argmin([e["val_loss"] for e in history["epochs"]]))
        if best_epoch == epoch:
            best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stop = epoch - best_epoch >= config.patience or epoch + 1 == config.max_epochs
        if runtime.is_main:
            # a finished trial keeps only its best weights (a quarter of the size: no optimiser state, no last model)
            resume_state = {} if stop else {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "rng": rng_state()}
            save_checkpoint(checkpoint_path, {**resume_state, "best_model": best_model,
                                              "progress": {"epoch": epoch + 1},
                                              "config": json.dumps(config.to_json())})
            history.update(best_epoch=best_epoch, best_val_loss=history["epochs"][best_epoch]["val_loss"], done=stop)
            write_json(history_path, history)
        if stop:
            break
    return history


def write_predictions(out_dir: Path, split: str, reader: ClipReader, videos: np.ndarray, labels: np.ndarray,
                      scores: np.ndarray) -> Path:
    """Write per-video and per-study prediction CSVs; returns the study-level file."""
    video_path = out_dir / f"predictions_{split}_videos.csv"
    with video_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "video_id", "label", "score"])
        for v, score in zip(videos, scores):
            writer.writerow([reader.study_ids[reader.study_of_video[v]], reader.video_ids[v], int(labels[v]),
                             f"{score:.6f}"])
    by_study: dict[str, list[float]] = {}
    study_label: dict[str, int] = {}
    for v, score in zip(videos, scores):
        study = reader.study_ids[reader.study_of_video[v]]
        by_study.setdefault(study, []).append(float(score))
        study_label[study] = int(labels[v])
    study_path = out_dir / f"predictions_{split}.csv"
    with study_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "label", "score"])
        for study in sorted(by_study):
            writer.writerow([study, study_label[study], f"{np.mean(by_study[study]):.6f}"])
    return study_path
