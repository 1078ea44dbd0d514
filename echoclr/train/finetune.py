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
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from echoclr.data import EpochPlan, SamplerConfig, plan_epoch
from echoclr.distributed import all_gather_objects, all_ranks_succeed, broadcast_object
from echoclr.jsonio import write_json
from echoclr.models import Classifier, Encoder, kinetics_init, load_encoder_state
from echoclr.overwrite import OverwriteRefusedError, remove_owned_folder
from echoclr.store import ClipReader, open_store
from echoclr.train.batches import EvalBatches, LabelledBatches, eval_batch_size
from echoclr.train.checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    load_checkpoint,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from echoclr.train.config import FinetuneConfig, science_json
from echoclr.train.monitor import RunLog
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
    """Mean sigmoid score over ``n_clips`` evenly spaced clips of each video: ``float64 (len(videos),)``.

    Under torchrun each rank scores a contiguous share of ``videos`` and every rank receives all the scores, in
    the order of ``videos`` (a collective: every rank must call it). ``model`` is the plain module, not the DDP
    wrapper: inference needs no gradient synchronisation.
    """
    batches = EvalBatches(reader, clip_len=clip_len, batch_size=batch_size, runtime=runtime, threads=threads,
                          kinetics=kinetics, size=size)
    return predict_with(model, batches, videos, n_clips=n_clips)


def predict_with(model: torch.nn.Module, batches: EvalBatches, videos: np.ndarray, *, n_clips: int) -> np.ndarray:
    """:func:`predict_videos` through a run's own eval loader (every validation pass and the test predictions of a
    fine-tuning run reuse one)."""
    if len(videos) == 0:
        return np.zeros(0)
    runtime = batches.runtime
    shares = np.array_split(np.asarray(videos, np.int64), runtime.world_size)
    mine = shares[runtime.rank]
    model.eval()
    scores = batches.mean_outputs(lambda x: torch.sigmoid(model(x).float()), mine, n_clips=n_clips)
    return np.concatenate(all_gather_objects(scores)) if runtime.distributed else scores


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
    continues from its last finished epoch. Runtime settings (threads, logging, the number of processes) may
    differ from the first run; the science (label, init, ratio, lrs, batch, epochs, seeds...) must not.

    Under ``torchrun`` this is data-parallel training of one model (DDP): each global batch of the single-process
    plan is split between the ranks, gradients are averaged so the loss is the global batch's mean, validation
    and test videos are scored in shares and gathered, rank 0 alone writes files, and every rank takes rank 0's
    early-stopping decision and learning-rate choice. With ``batchnorm="train"`` batch-norm statistics are
    synchronised over the ranks on CUDA (SyncBatchNorm); on the CPU (gloo), where torch has no SyncBatchNorm, each
    rank normalises its own share of the batch, so a CPU run with several processes is not the single-process
    computation. With ``batchnorm="frozen"`` no clip's output depends on the rest of its batch, so on any device the
    ranks together compute the single-process run (same chosen epoch and predictions up to float summation order).

    Raises:
        UsageError: the label is not in the store (UnknownNameError); ``overwrite`` but ``out_dir`` is not a
            fine-tuning run or is protected (see :mod:`echoclr.overwrite`).
        FileExistsError: ``out_dir`` holds a run with another config, or other files, and ``overwrite`` is False.
        ValueError: no labelled videos in the train or val split; a global batch that does not split over ranks.
        RankFailedError: another rank failed during setup.
    """
    out_dir = Path(out_dir)
    runtime = setup_runtime(config.runtime)
    try:
        result = _finetune(store_location, out_dir, config, runtime, overwrite=overwrite, on_log=on_log)
    except BaseException:
        teardown_runtime(runtime, failed=True)  # no barrier: the other ranks may be elsewhere
        raise
    teardown_runtime(runtime)
    return result


def _prepare_out_dir(out_dir: Path, config: FinetuneConfig, *, overwrite: bool) -> None:
    """Check ``out_dir`` (rank 0 only) and write the config; refuse anything that is not this run's folder."""
    saved_path = out_dir / CONFIG_NAME
    try:
        saved = json.loads(saved_path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        saved = None
    except ValueError:
        saved = {"kind": "unreadable"}
    is_run = isinstance(saved, dict) and saved.get("kind") == "finetune"
    if overwrite:
        remove_owned_folder(out_dir, owned=is_run, what="a fine-tuning run folder",
                            sign=f"{CONFIG_NAME} of a fine-tuning run")
    elif out_dir.exists() and any(out_dir.iterdir()):
        if not is_run:
            raise OverwriteRefusedError(
                f"{out_dir} is not empty and is not a fine-tuning run (no fine-tuning {CONFIG_NAME}): "
                "choose another --out"
            )
        if science_json(saved) != science_json(config.to_json()):
            raise FileExistsError(
                f"{out_dir} holds a fine-tuning run with another config: pass --overwrite or choose another --out"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved_path, config.to_json())


def _finetune(store_location, out_dir: Path, config: FinetuneConfig, runtime: Runtime, *, overwrite, on_log):
    # setup: every check that can fail runs before anything is deleted or written, and a failure on any rank
    # reaches every rank before the first training collective
    reader = None
    try:
        with all_ranks_succeed():
            store = open_store(store_location)
            reader = ClipReader(store, threads=config.runtime.loader_threads)
            labels = reader.labels(config.label)  # UnknownNameError lists the store's labels
            train_all = _labelled(reader, config.label, "train")
            val = _labelled(reader, config.label, "val")
            if len(train_all) == 0 or len(val) == 0:
                raise ValueError(
                    f"{store.location}: label {config.label!r} needs labelled videos in both train and val splits "
                    f"(found {len(train_all)} and {len(val)})"
                )
            if config.batch_size % runtime.world_size:
                raise ValueError(
                    f"batch_size {config.batch_size} must divide evenly over {runtime.world_size} ranks"
                )
            if runtime.is_main:
                _prepare_out_dir(out_dir, config, overwrite=overwrite)
        return _finetune_ready(reader, labels, train_all, val, out_dir, config, runtime, on_log)
    finally:
        if reader is not None:
            reader.close()


def _finetune_ready(reader, labels, train_all, val, out_dir: Path, config: FinetuneConfig, runtime: Runtime, on_log):
    study_label = {reader.study_ids[reader.study_of_video[v]]: int(labels[v]) for v in train_all}
    chosen = set(titration_studies(list(study_label), config.ratio, config.subset_seed, labels=study_label))
    train = np.array([v for v in train_all if reader.study_ids[reader.study_of_video[v]] in chosen], np.int64)

    # one training loader and one eval loader (and their DALI pipelines) for the whole run: every epoch of every
    # learning rate, every validation pass and the predictions reuse them
    kinetics = config.init_kind == "kinetics"
    clips = dict(clip_len=config.clip_len, runtime=runtime, threads=config.runtime.loader_threads, kinetics=kinetics,
                 size=config.runtime.size)
    loaders = (LabelledBatches(reader, train, label=config.label, batch_size=config.batch_size // runtime.world_size,
                               **clips),
               EvalBatches(reader, batch_size=eval_batch_size(config.batch_size), **clips))
    trials = {}
    for lr in config.learning_rates():
        trials[lr] = _train_one_lr(reader, labels, train, val, config, lr, out_dir / f"lr_{lr:g}", runtime, on_log,
                                   loaders)
    # every rank takes rank 0's choice (identical gathered val losses make them agree anyway; this makes it a rule)
    best_lr = broadcast_object(min(trials, key=lambda lr: trials[lr]["best_val_loss"]))
    best = trials[best_lr]
    model = _classifier(config, runtime)
    best_checkpoint = out_dir / f"lr_{best_lr:g}" / CHECKPOINT_NAME
    best_state = load_checkpoint(best_checkpoint)["best_model"] if runtime.is_main else None
    model.load_state_dict(broadcast_object(best_state))
    if runtime.is_main:
        save_checkpoint(out_dir / CHECKPOINT_NAME,
                        {"model": model.state_dict(), "config": json.dumps(config.to_json())})

    predictions = {}
    for split in EVAL_SPLITS:
        videos = _labelled(reader, config.label, split)
        if len(videos) == 0:
            continue
        scores = predict_with(model, loaders[1], videos, n_clips=config.eval_clips)
        if runtime.is_main:
            predictions[split] = write_predictions(out_dir, split, reader, videos, labels, scores)
    summary = {
        "label": config.label, "init": config.init, "ratio": config.ratio, "lr": best_lr,
        "best_epoch": best["best_epoch"], "val_loss": best["best_val_loss"],
        "n_train_studies": len(chosen), "n_train_videos": int(len(train)), "n_val_videos": int(len(val)),
        "world_size": runtime.world_size,
        "trials": {f"{lr:g}": {"best_val_loss": t["best_val_loss"], "best_epoch": t["best_epoch"]}
                   for lr, t in trials.items()},
    }
    if runtime.is_main:
        write_json(out_dir / "summary.json", summary)
    return FinetuneResult(out_dir, best_lr, best["best_epoch"], best["best_val_loss"], predictions)


def _classifier(config: FinetuneConfig, runtime: Runtime) -> Classifier:
    torch.manual_seed(config.seed)
    # every rank loads the init itself (random, Kinetics or SSL weights); DDP then checks they agree in shape
    model = Classifier(build_encoder(config.init), dropout=config.dropout)
    return model.to(runtime.device, memory_format=runtime.memory_format)


def _data_parallel(model: Classifier, runtime: Runtime, batchnorm: str) -> torch.nn.Module:
    """The module the training step calls: the model itself, or under torchrun its DDP wrapper."""
    if not runtime.distributed:
        return model
    if runtime.device.type == "cuda" and batchnorm == "train":
        # batch-norm over the global batch, as one process would see it (SyncBatchNorm needs a GPU)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[runtime.local_rank])
    return DistributedDataParallel(model)


def _train_mode(model: torch.nn.Module, batchnorm: str) -> None:
    """Training mode, except batch-norm layers when ``batchnorm == "frozen"`` (they normalise with their running
    statistics, which then never change; their scale and shift still learn)."""
    model.train()
    if batchnorm == "frozen":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def rank_share(plan: EpochPlan, batch_size: int, rank: int, world_size: int, *, min_share: int = 2
               ) -> tuple[EpochPlan, list[int]]:
    """This rank's items of a single-process epoch plan: a contiguous share of every global batch.

    Global batch ``k`` is ``plan[k * batch_size : (k + 1) * batch_size]``; rank ``r`` takes share ``r`` of
    ``np.array_split`` of it (rank 0 the first items), so the ranks together see exactly the single-process batches,
    in order. A last partial batch that would leave a rank fewer than ``min_share`` clips is dropped: batch-norm in
    training needs 2 values per channel (``min_share=2``; with one process that drops a last batch of 1 clip),
    frozen batch-norm needs 1, and a rank without clips would miss the gradient all-reduce. So with several
    processes the last batch of an epoch is trained on when it holds at least ``min_share * world_size`` clips.

    Returns:
        The rank's plan, and the global size of each of its batches (the loss divides by it).
    """
    n = len(plan)
    positions, sizes = [], []
    for first in range(0, n, batch_size):
        batch = np.arange(first, min(first + batch_size, n))
        if len(batch) < min_share * world_size:
            break
        positions.append(np.array_split(batch, world_size)[rank])
        sizes.append(len(batch))
    index = np.concatenate(positions) if positions else np.zeros(0, np.int64)
    return EpochPlan(plan.mode, {name: col[index] for name, col in plan.fields.items()}), sizes


def _train_one_lr(reader, labels, train, val, config: FinetuneConfig, lr: float, trial_dir: Path, runtime: Runtime,
                  on_log, loaders: tuple[LabelledBatches, EvalBatches]) -> dict[str, Any]:
    history_path = trial_dir / "history.json"
    checkpoint_path = trial_dir / CHECKPOINT_NAME
    # rank 0 reads the trial's progress and every rank resumes from it (one reader of the files)
    saved = None
    if runtime.is_main:
        history = json.loads(history_path.read_text()) if history_path.exists() else {"epochs": [], "done": False}
        saved = (history, load_checkpoint(checkpoint_path) if checkpoint_path.exists() and not history["done"]
                 else None)
    history, state = broadcast_object(saved)
    if history["done"]:
        return history
    model = _classifier(config, runtime)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, **runtime.adam_options)
    best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_model = state["best_model"]
        start_epoch = int(state["progress"]["epoch"])
        set_rng_state(state["rng"])
        history["epochs"] = history["epochs"][:start_epoch]
    train_model = _data_parallel(model, runtime, config.batchnorm)
    model = train_model.module if runtime.distributed else model  # SyncBatchNorm conversion made a new module
    train_labels = labels[train]
    pos_weight = None
    if config.class_weights:
        n_pos = float(train_labels.sum())
        n_neg = float(len(train_labels) - n_pos)
        pos_weight = torch.tensor(n_neg / max(n_pos, 1.0), device=runtime.device)
    sampler = SamplerConfig(mode="single", clip_len=config.clip_len, seed=config.seed, reorder=False)
    train_batches, eval_batches = loaders
    study_of_train = reader.study_of_video[train]
    frames_of_train = reader.n_frames[train]

    log = RunLog(trial_dir, tensorboard=config.runtime.tensorboard, enabled=runtime.is_main)
    for epoch in range(start_epoch, config.max_epochs):
        # the single-process plan of the epoch, each global batch split between the ranks
        plan = plan_epoch(sampler, study_of_train, frames_of_train, epoch=epoch)
        plan, global_sizes = rank_share(plan, config.batch_size, runtime.rank, runtime.world_size,
                                        min_share=1 if config.batchnorm == "frozen" else 2)
        _train_mode(train_model, config.batchnorm)
        loss_sum = torch.zeros((), device=runtime.device)
        for (x, y), global_size in zip(train_batches(plan), global_sizes):
            # forward
            with runtime.autocast():
                logits = train_model(x)
            # loss: this rank's share of the global batch's mean; DDP averages gradients over the ranks, so
            # scaling by world_size / global_size makes the step that of the global mean (equal shares or not)
            loss_items = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight,
                                                            reduction="sum")
            loss = loss_items * (runtime.world_size / global_size)
            # backward
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # step
            optimizer.step()
            loss_sum += loss_items.detach()
        # log: one all-reduce per epoch for the mean training loss over every item of every rank
        if runtime.distributed:
            dist.all_reduce(loss_sum)
            # batch-norm running statistics were last updated from each rank's own share; evaluate every rank
            # with rank 0's, as DDP itself does at the start of each training forward (broadcast_buffers)
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        n_items = sum(global_sizes)
        train_loss = float(loss_sum) / n_items if n_items else math.nan
        val_scores = predict_with(model, eval_batches, val, n_clips=config.eval_clips)
        val_loss = _bce(val_scores, labels[val])
        record = {"lr": lr, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "val_auroc": _study_auroc(reader, val, labels, val_scores)}
        history["epochs"].append(record)
        # log
        log.write(record, step=epoch, group=f"finetune_lr_{lr:g}")
        if on_log and runtime.is_main:
            on_log(record)
        best_epoch = int(np.argmin([e["val_loss"] for e in history["epochs"]]))
        if best_epoch == epoch:
            best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # early stopping: rank 0 decides, every rank follows (the gathered val loss is the same on all ranks)
        stop = broadcast_object(epoch - best_epoch >= config.patience or epoch + 1 == config.max_epochs)
        if runtime.is_main:
            # a finished trial keeps only its best weights (a quarter of the size: no optimiser state, no last model)
            resume_state = {} if stop else {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "rng": rng_state()}
            save_checkpoint(checkpoint_path, {**resume_state, "best_model": best_model,
                                              "progress": {"epoch": epoch + 1, "world_size": runtime.world_size},
                                              "config": json.dumps(config.to_json())})
        history.update(best_epoch=best_epoch, best_val_loss=history["epochs"][best_epoch]["val_loss"], done=stop)
        if runtime.is_main:
            write_json(history_path, history)
        if stop:
            break
    log.close()
    return history


def _study_auroc(reader: ClipReader, videos: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Study-level AUROC (mean score over a study's videos); NaN when the studies hold one class."""
    from echoclr.eval.metrics import auroc

    studies, inverse = np.unique(reader.study_of_video[videos], return_inverse=True)
    study_scores = np.bincount(inverse, weights=scores) / np.bincount(inverse)
    study_labels = np.zeros(len(studies))
    study_labels[inverse] = labels[videos]
    return auroc(study_labels, study_scores) if len(np.unique(study_labels)) == 2 else math.nan


def _score_text(score: float) -> str:
    """A score as the shortest text that reads back to the same float64. Fixed decimals would tie a confident
    model's scores (a run whose test scores all lay in [0, 1.4e-9] was written as 0.000000 for every study, so its
    AUROC read 0.5 instead of 0.311)."""
    return repr(float(score))


def write_predictions(out_dir: Path, split: str, reader: ClipReader, videos: np.ndarray, labels: np.ndarray,
                      scores: np.ndarray) -> Path:
    """Write per-video and per-study prediction CSVs; returns the study-level file."""
    video_path = out_dir / f"predictions_{split}_videos.csv"
    with video_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "video_id", "label", "score"])
        for v, score in zip(videos, scores):
            writer.writerow([reader.study_ids[reader.study_of_video[v]], reader.video_ids[v], int(labels[v]),
                             _score_text(score)])
    from echoclr.eval.predictions import aggregate_to_studies  # the one per-study rule: mean over its videos

    studies = aggregate_to_studies([reader.study_ids[reader.study_of_video[v]] for v in videos],
                                   labels[videos].astype(np.int64), scores, source=str(video_path))
    study_path = out_dir / f"predictions_{split}.csv"
    with study_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "label", "score"])
        for study, label, score in zip(studies.study_ids, studies.labels, studies.scores):
            writer.writerow([study, int(label), _score_text(score)])
    return study_path
