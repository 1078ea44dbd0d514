"""Self-supervised pretraining: SimCLR, MI-SimCLR and EchoCLR on one data path, differing only by configuration.

Resumable at any step: the epoch plan, the augmentation parameters and the model's RNG are pure functions of
(seed, epoch, item) or restored from the checkpoint, so a run killed and resumed ends with the same weights as one
that never stopped (exactly, on the CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from echoclr.data import EpochPlan, SamplerConfig, plan_epoch, rank_item_counts
from echoclr.distributed import all_ranks_succeed, broadcast_object
from echoclr.errors import UsageError
from echoclr.jsonio import write_json
from echoclr.losses import EchoCLRLoss
from echoclr.models import Encoder, PretrainModel
from echoclr.overwrite import OverwriteRefusedError
from echoclr.store import ClipReader, open_store
from echoclr.train.batches import PretrainBatches, batch_studies
from echoclr.train.checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from echoclr.train.config import PretrainConfig, science_json
from echoclr.train.monitor import METRICS_NAME, TENSORBOARD_DIR, PretrainMonitor, RunLog
from echoclr.train.runtime import Runtime, setup_runtime, teardown_runtime


class RunExistsError(UsageError, FileExistsError):
    """The run folder holds another run; resume it, or pass --overwrite to start over."""


@dataclass
class PretrainResult:
    run_dir: Path
    global_step: int
    epochs_done: int
    last_loss: float | None


def build_pretrain_model(config: PretrainConfig) -> PretrainModel:
    torch.manual_seed(config.seed)
    return PretrainModel(Encoder(), clip_len=config.clip_len, reorder=config.reorder)


def _saved_kind(run_dir: Path) -> str | None:
    """The ``kind`` of the run config in ``run_dir`` (``pretrain``, ``finetune``); None without one."""
    try:
        return str(json.loads((run_dir / CONFIG_NAME).read_text()).get("kind"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, AttributeError):
        return "unknown"


def _prepare_run_dir(run_dir: Path, config: PretrainConfig, *, resume: bool, overwrite: bool,
                     world_size: int) -> dict | None:
    """Returns the checkpoint to resume from, or None for a fresh run."""
    checkpoint = run_dir / CHECKPOINT_NAME
    saved_kind = _saved_kind(run_dir)
    if saved_kind not in (None, "pretrain"):
        # another command's run: neither --overwrite nor a fresh run may replace its config.json
        raise OverwriteRefusedError(
            f"{run_dir} holds a {saved_kind} run, not a pretraining run: choose another --out"
        )
    if overwrite and run_dir.exists():
        for name in (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME):
            (run_dir / name).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
        return None
    if checkpoint.exists():
        if not resume:
            raise RunExistsError(
                f"{run_dir} already holds a pretraining run: pass --resume to continue it or --overwrite to start over"
            )
        state = load_checkpoint(checkpoint)
        saved, asked = science_json(json.loads(state["config"])), science_json(config.to_json())
        if saved != asked:
            changed = sorted(k for k in set(saved) | set(asked) if saved.get(k) != asked.get(k))
            raise UsageError(
                f"{run_dir} was started with a different config ({', '.join(changed)}: saved "
                f"{[saved.get(k) for k in changed]}, asked {[asked.get(k) for k in changed]}); resume with the same "
                "options (threads, logging, checkpoint cadence, --max-steps and the device may change) or use "
                "another --out"
            )
        progress = state["progress"]
        saved_world = int(progress.get("world_size", 1))
        if saved_world != world_size and int(progress["step"]) != 0:
            # mid-epoch, the items already used are those of a plan sharded over saved_world ranks: a plan for
            # another world size cannot continue it exactly. At an epoch boundary the next epoch is simply
            # planned for the new world size.
            raise UsageError(
                f"{run_dir} was checkpointed mid-epoch (epoch {progress['epoch']}, step {progress['step']}) with "
                f"{saved_world} process(es); resume it with {saved_world} (torchrun --nproc-per-node "
                f"{saved_world}), or with {world_size} from a checkpoint at an epoch boundary"
            )
        return state
    return None


def pretrain(
    store_location: str | Path,
    run_dir: str | Path,
    config: PretrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> PretrainResult:
    """Pretrain an encoder on a store's split and write checkpoints to ``run_dir``.

    Args:
        store_location: the echoclr store (path or URL).
        run_dir: output folder: ``checkpoint.pt`` (latest), ``config.json``, ``metrics.jsonl``.
        config: method and hyperparameters (the paper's by default).
        resume: continue the run in ``run_dir`` from its last checkpoint (same epoch, same item, same RNG). Runtime
            settings may change (threads, logging and checkpoint cadence, ``max_steps``, the device); the number of
            processes may change at an epoch boundary (the next epoch is planned for it) and is refused mid-epoch.
        overwrite: discard an existing run in ``run_dir``.
        on_log: called on the main rank with each metrics record.

    Every item of an epoch is used once: the last batch may be partial, and under torchrun a rank with fewer items
    than the busiest rank repeats its first items so that all ranks run the same number of steps.

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        UsageError: ``resume`` with another science config, or mid-epoch with another number of processes.
        ValueError: the config cannot work with this data (e.g. a batch larger than the epoch).
    """
    run_dir = Path(run_dir)
    runtime = setup_runtime(config.runtime)
    try:
        result = _pretrain(store_location, run_dir, config, runtime, resume=resume, overwrite=overwrite,
                           on_log=on_log)
    except BaseException:
        teardown_runtime(runtime, failed=True)
        raise
    teardown_runtime(runtime)
    return result


def _pretrain(store_location, run_dir: Path, config: PretrainConfig, runtime: Runtime, *, resume, overwrite, on_log):
    # setup: an error on any rank (rank 0's folder checks, a missing store) stops every rank here, before the
    # broadcast and DDP's collectives, instead of leaving the others waiting in them
    with all_ranks_succeed():
        state = (_prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite, world_size=runtime.world_size)
                 if runtime.is_main else None)
    state = broadcast_object(state)
    with all_ranks_succeed():
        store, reader, videos, sampler, local_batch = _open_data(store_location, config, runtime)
    study_of_video = reader.study_of_video[videos]
    n_frames = reader.n_frames[videos]

    model = build_pretrain_model(config).to(runtime.device, memory_format=runtime.memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, **runtime.adam_options)
    criterion = EchoCLRLoss(temperature=config.temperature, reorder=config.reorder, gather=True)
    epoch, step_in_epoch, global_step = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step_in_epoch, global_step = (int(state["progress"][k]) for k in ("epoch", "step", "global_step"))
        set_rng_state(state["rng"])
    train_model = DistributedDataParallel(model) if runtime.distributed else model
    if config.runtime.compile:
        train_model = torch.compile(train_model)
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_NAME, config.to_json())

    def checkpoint(epoch_: int, step_: int) -> None:
        if runtime.is_main:
            save_checkpoint(
                run_dir / CHECKPOINT_NAME,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "progress": {"epoch": epoch_, "step": step_, "global_step": global_step,
                                 "world_size": runtime.world_size},
                    "rng": rng_state(),
                    "config": json.dumps(config.to_json()),
                },
            )

    last_loss = None
    max_steps = config.runtime.max_steps
    log = RunLog(run_dir, tensorboard=config.runtime.tensorboard, enabled=runtime.is_main)
    monitor = PretrainMonitor(reader, store.label_names, criterion.contrastive, runtime, clip_len=config.clip_len,
                              size=config.runtime.size, threads=config.runtime.loader_threads, lr=config.lr)
    # one loader (and DALI pipeline) for the whole run: each epoch gives it its plan
    pair_batches = PretrainBatches(reader, videos, clip_len=config.clip_len, batch_size=local_batch, runtime=runtime,
                                   threads=config.runtime.loader_threads, size=config.runtime.size,
                                   device_cache=config.runtime.device_cache)
    try:
        while epoch < config.num_epochs and (max_steps is None or global_step < max_steps):
            counts = rank_item_counts(sampler, study_of_video, n_frames, epoch=epoch, world_size=runtime.world_size)
            if int(counts.sum()) < config.batch_size:
                raise ValueError(
                    f"batch_size {config.batch_size} is larger than an epoch of {int(counts.sum())} "
                    f"{'pairs' if config.multi_instance else 'videos'}: lower --batch-size"
                )
            if int(counts.min()) == 0:
                raise ValueError(
                    f"a rank has no {'pairs' if config.multi_instance else 'videos'} in epoch {epoch} (fewer studies "
                    f"than {runtime.world_size} ranks): use fewer processes"
                )
            # every item of the epoch is used: the last batch may be partial, and ranks with fewer items than the
            # busiest one repeat their first items so that every rank runs the same number of steps (DDP)
            longest = int(counts.max())
            steps = math.ceil(longest / local_batch)
            plan = plan_epoch(sampler, study_of_video, n_frames, epoch=epoch, rank=runtime.rank,
                              world_size=runtime.world_size)
            plan = _padded(plan, longest)[step_in_epoch * local_batch :]
            batches = pair_batches(plan)
            studies = batch_studies(plan, study_of_video, local_batch, runtime)  # (n,) per batch, for the mask
            train_model.train()
            tick, clips_since = time.perf_counter(), 0
            for (x, order), study in zip(batches, studies):
                # forward: both views in one batch (the loader's layout), so batch-norm sees all clips of the step
                with runtime.autocast():
                    z, order_logits = train_model(x)
                    z_i, z_j = z.float().chunk(2)
                    # loss: NT-Xent over the global batch (+ frame order for EchoCLR)
                    targets = order if config.reorder else None
                    logits = order_logits.float() if order_logits is not None else None
                    parts = criterion(z_i, z_j, logits, targets, study if config.study_mask else None)
                # backward
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                # step
                optimizer.step()
                step_in_epoch += 1
                global_step += 1
                clips_since += len(x)
                # log
                final = (max_steps is not None and global_step >= max_steps) or (
                    step_in_epoch == steps and epoch + 1 >= config.num_epochs)
                if runtime.is_main and (global_step % config.runtime.log_every == 0 or step_in_epoch == steps or final):
                    last_loss = float(parts.total.detach())
                    elapsed = time.perf_counter() - tick
                    record = {
                        "epoch": epoch, "step": step_in_epoch, "steps": steps, "global_step": global_step,
                        "loss": last_loss, "contrastive": float(parts.contrastive.detach()),
                        "order": None if parts.order is None else float(parts.order.detach()),
                        "clips_per_s": clips_since * runtime.world_size / max(elapsed, 1e-9),
                    }
                    log.write(record, step=global_step, group="train")
                    if on_log:
                        on_log(record)
                    tick, clips_since = time.perf_counter(), 0
                # monitor: the collapse alarm and val kNN probe, every eval_every steps and at the end
                if global_step % config.runtime.eval_every == 0 or final:
                    report = {"kind": "monitor", "global_step": global_step,
                              **monitor.evaluate(model, z_i.detach(), z_j.detach(), float(parts.contrastive.detach()),
                                                 study if config.study_mask else None)}
                    log.write(report, step=global_step, group="monitor")
                    if on_log and runtime.is_main:
                        on_log(report)
                if global_step % config.runtime.checkpoint_every == 0:
                    checkpoint(epoch, step_in_epoch)
                if max_steps is not None and global_step >= max_steps:
                    break
            if step_in_epoch >= steps:
                epoch, step_in_epoch = epoch + 1, 0
            checkpoint(epoch, step_in_epoch)
    finally:
        log.close()
        reader.close()
    return PretrainResult(run_dir, global_step, epoch, last_loss)


def _padded(plan: EpochPlan, n_items: int) -> EpochPlan:
    """``plan`` lengthened to ``n_items`` by repeating its items from the start (a rank with fewer items)."""
    if len(plan) >= n_items or len(plan) == 0:
        return plan
    index = np.arange(n_items) % len(plan)  # (n_items,): 0..len-1, then 0.. again
    return EpochPlan(plan.mode, {name: col[index] for name, col in plan.fields.items()})


def _open_data(store_location, config: PretrainConfig, runtime: Runtime):
    """The store, its reader, the split's videos, the sampler and the per-rank batch."""
    store = open_store(store_location)
    videos = np.array(store.select([config.split]), dtype=np.int64)
    if len(videos) == 0:
        raise ValueError(f"{store.location} has no videos in split {config.split!r}")
    if config.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly over {runtime.world_size} ranks")
    reader = ClipReader(store, threads=config.runtime.loader_threads)
    sampler = SamplerConfig(
        mode="pairs" if config.multi_instance else "single",
        clip_len=config.clip_len,
        seed=config.seed,
        reorder=config.reorder,
    )
    return store, reader, videos, sampler, config.batch_size // runtime.world_size
