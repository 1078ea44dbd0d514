"""Training benchmark: clips/s of pretraining (K=4, EchoCLR loss) and fine-tuning (16 frames, BCE) steps.

For each task and each (AMP, channels_last_3d) setting, two rows:

- ``model only``: synthetic clips resident on the device, so only compute is timed (nanoGPT/timm style);
- ``end to end``: clips from the store through echoclr's loader (:mod:`echoclr.train.batches`, the trainer's own
  data path), so the loader's cost shows as the gap to the model-only row.

Each row carries the FLOPs per clip (counted by ``FlopCounterMode``, forward + backward), the achieved FLOP/s and
the model FLOP utilisation (MFU) against this device's matmul rate (bf16 for AMP rows, else fp32), measured in
every round beside the model's timing.
On a CPU the default is a short run (small batches, 56 px clips, a few steps) and the settings say so; on CUDA
the defaults are the paper's batches (392 pairs pretraining, 88 clips fine-tuning) at 112 px.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoclr.bench.data import DEFAULT_SPEC, QUICK_SPEC, DatasetSpec, prepare_dataset
from echoclr.bench.environment import machine_info
from echoclr.bench.flops import matmul_flops_per_s, training_flops_per_clip
from echoclr.bench.results import make_result, row
from echoclr.bench.timing import Stats
from echoclr.data.sampling import SamplerConfig, plan_epoch
from echoclr.losses import EchoCLRLoss
from echoclr.models import Classifier, Encoder, PretrainModel
from echoclr.pipeline import plan_array
from echoclr.store import ClipReader
from echoclr.train import RuntimeConfig
from echoclr.train.batches import labelled_batches, pretrain_batches
from echoclr.train.runtime import Runtime, setup_runtime

TASKS = {"pretrain": 4, "finetune": 16}
"""Task -> frames per clip (the paper's)."""


@dataclass(frozen=True)
class TrainBenchConfig:
    """Settings of the training benchmark; None fields take the device's default (see :meth:`resolved`).

    Attributes:
        dataset: the synthetic dataset (end-to-end rows).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tasks: which of ``"pretrain"`` (K=4, EchoCLR loss) and ``"finetune"`` (16 frames, BCE) to time.
        pretrain_batch: pairs per pretraining step (2 clips each); None = 392 on CUDA, 4 on CPU.
        finetune_batch: clips per fine-tuning step; None = 88 on CUDA, 2 on CPU.
        size: frame size the model sees, px; None = 112 on CUDA, 56 on CPU (the loader's 112 px clips are
            area-downsampled, as the trainer's CPU preset does).
        steps: optimiser steps timed per repeat; None = 20 on CUDA, 2 on CPU.
        warmup_steps: untimed steps before each timed window; None = 5 on CUDA, 1 on CPU.
        repeats: timed windows per row.
        amp: AMP settings to run (bf16 autocast); None = (True, False) on CUDA, (False,) on CPU.
        channels_last: channels_last_3d settings to run.
        end_to_end: add the end-to-end rows.
        loader_threads: reader/DALI threads of the end-to-end loader; None = min(8, cores) on CUDA, cores on CPU.
        matmul_size: size of the matmul that measures the device's rate; None = 8192 on CUDA, 2048 on CPU.
        seed: seed of weights, synthetic inputs, sampler and augmentation.
        quick: a smoke run.
    """

    dataset: DatasetSpec = DEFAULT_SPEC
    device: str = "auto"
    tasks: tuple[str, ...] = tuple(TASKS)
    pretrain_batch: int | None = None
    finetune_batch: int | None = None
    size: int | None = None
    steps: int | None = None
    warmup_steps: int | None = None
    repeats: int = 3
    amp: tuple[bool, ...] | None = None
    channels_last: tuple[bool, ...] = (True, False)
    end_to_end: bool = True
    loader_threads: int | None = None
    matmul_size: int | None = None
    seed: int = 0
    quick: bool = False

    def __post_init__(self) -> None:
        RuntimeConfig(device=self.device)  # raises naming a bad device
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"TrainBenchConfig.tasks must be a non-empty subset of {tuple(TASKS)}, got {self.tasks}")
        for name in ("pretrain_batch", "finetune_batch", "steps", "loader_threads", "matmul_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"TrainBenchConfig.{name} must be None or an int >= 1, got {value!r}")
        if self.size is not None and not 16 <= self.size <= 1024:
            raise ValueError(f"TrainBenchConfig.size must be None or in [16, 1024] px, got {self.size}")
        if self.warmup_steps is not None and self.warmup_steps < 1:
            raise ValueError(f"TrainBenchConfig.warmup_steps must be >= 1 (the first step pays for set-up), "
                             f"got {self.warmup_steps}")
        if self.repeats < 1:
            raise ValueError(f"TrainBenchConfig.repeats must be >= 1, got {self.repeats}")
        if not self.channels_last or (self.amp is not None and not self.amp):
            raise ValueError("TrainBenchConfig.amp and channels_last must list at least one setting each")

    @classmethod
    def smoke(cls, **overrides: Any) -> "TrainBenchConfig":
        """A smoke-run config: tiny dataset, batch 1, 32 px, one step per window, channels_last on only."""
        base = cls(dataset=QUICK_SPEC, pretrain_batch=1, finetune_batch=1, size=32, steps=1, warmup_steps=1,
                   repeats=1, channels_last=(True,), matmul_size=256, quick=True)
        return replace(base, **overrides)

    @classmethod
    def gate(cls, **overrides: Any) -> "TrainBenchConfig":
        """The ``make bench`` preset: pretraining (the EchoCLR step; fine-tuning runs the same network on longer
        clips and stays in the full bench), model only and end to end, channels_last_3d only, 5 rounds of one step
        each at the device's batch (112 px on CUDA, 32 px on a CPU); compared with ``benchmarks/baselines/``."""
        cuda = overrides.get("device", "auto") != "cpu" and torch.cuda.is_available()
        base = cls(tasks=("pretrain",), steps=1, repeats=5, channels_last=(True,), size=None if cuda else 32)
        return replace(base, **overrides)

    def resolved(self, cuda: bool) -> "TrainBenchConfig":
        """This config with every None replaced by the default for a CUDA (True) or CPU (False) device."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        defaults = (
            dict(pretrain_batch=392, finetune_batch=88, size=112, steps=20, warmup_steps=5, amp=(True, False),
                 loader_threads=min(8, cores), matmul_size=8192)
            if cuda else
            dict(pretrain_batch=4, finetune_batch=2, size=56, steps=2, warmup_steps=1, amp=(False,),
                 loader_threads=cores, matmul_size=2048)
        )
        return replace(self, **{k: v if getattr(self, k) is None else getattr(self, k) for k, v in defaults.items()})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ steps
def pretrain_step(model: torch.nn.Module, criterion: EchoCLRLoss, optimizer: torch.optim.Optimizer,
                  runtime: Runtime) -> Callable[[tuple], None]:
    """One EchoCLR pretraining step on ``(x, order)`` (both views in one batch), staged as the trainer's loop."""

    def step(batch: tuple) -> None:
        x, order = batch
        # forward: both views in one batch, as the loader delivers them
        with runtime.autocast():
            z, order_logits = model(x)
            z_i, z_j = z.float().chunk(2)
            # loss: NT-Xent + frame order
            parts = criterion(z_i, z_j, order_logits.float(), order)
        # backward
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        # step
        optimizer.step()

    return step


def finetune_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime
) -> Callable[[tuple], None]:
    """One fine-tuning step on ``(x, y)``: logits, BCE-with-logits, backward, Adam."""

    def step(batch: tuple) -> None:
        x, y = batch
        # forward
        with runtime.autocast():
            logits = model(x)
        # loss
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        # backward
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # step
        optimizer.step()

    return step


def build_step(task: str, runtime: Runtime, seed: int) -> tuple[torch.nn.Module, Callable[[tuple], None]]:
    """A freshly initialised model for ``task`` on the runtime's device and memory format, and its training step.

    Args:
        task: ``"pretrain"`` (EchoCLR model and loss) or ``"finetune"`` (classifier, BCE).
        runtime: device, AMP and memory format (as the trainer decides them).
        seed: weight initialisation seed.

    Returns:
        ``(model, step)``; ``step(batch)`` runs forward, loss, backward and an Adam step.
    """
    torch.manual_seed(seed)
    if task == "pretrain":
        model = PretrainModel(Encoder(), clip_len=TASKS[task], reorder=True)
    else:
        model = Classifier(Encoder())
    model = model.to(runtime.device, memory_format=runtime.memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, **runtime.adam_options)
    if task == "pretrain":
        return model, pretrain_step(model, EchoCLRLoss(temperature=0.5, reorder=True, gather=True), optimizer, runtime)
    return model, finetune_step(model, optimizer, runtime)


# ------------------------------------------------------------------ inputs
def synthetic_batches(task: str, batch: int, size: int, runtime: Runtime, seed: int) -> Iterator[tuple]:
    """The same device-resident batch forever: clips ``(n, 1, K, size, size)`` in the run's memory format."""
    generator = torch.Generator().manual_seed(seed)
    k = TASKS[task]

    def clips(n: int) -> torch.Tensor:
        x = torch.rand(n, 1, k, size, size, generator=generator)  # (N, C, T, H, W)
        return x.to(runtime.device).contiguous(memory_format=runtime.memory_format)

    if task == "pretrain":
        orders = torch.randint(0, 24, (2 * batch,), generator=generator).to(runtime.device)
        fixed: tuple = (clips(2 * batch), orders)  # views i then views j, as PairLoader yields
    else:
        fixed = (clips(batch), torch.randint(0, 2, (batch,), generator=generator).float().to(runtime.device))
    while True:
        yield fixed


def _long_table(reader: ClipReader, sampler: SamplerConfig, n_items: int) -> np.ndarray:
    tables, total, epoch = [], 0, 0
    while total < n_items:
        _, table = plan_array(plan_epoch(sampler, reader.study_of_video, reader.n_frames, epoch=epoch))
        tables.append(table)
        total += len(table)
        epoch += 1
    return np.concatenate(tables)  # epochs stacked: (sum M_e, n_fields)


def loader_batches(task: str, reader: ClipReader, batch: int, n_steps: int, config: TrainBenchConfig,
                   runtime: Runtime, epoch: int) -> Iterator[tuple]:
    """Batches through the trainer's data path (store -> sampler plan -> DALI loader -> resize)."""
    videos = np.arange(len(reader), dtype=np.int64)
    k = TASKS[task]
    common = dict(clip_len=k, batch_size=batch, runtime=runtime, threads=config.loader_threads, size=config.size)
    if task == "pretrain":
        table = _long_table(reader, SamplerConfig("pairs", clip_len=k, seed=config.seed), (n_steps + 4) * batch)
        return pretrain_batches(reader, table, videos, **common)
    table = _long_table(reader, SamplerConfig("single", clip_len=k, seed=config.seed, reorder=False),
                        (n_steps + 4) * batch)
    return labelled_batches(reader, table, videos, label="lvh", kinetics=False, **common)


# ------------------------------------------------------------------ timing
def time_steps(step: Callable[[tuple], None], batches: Iterator[tuple], *, warmup: int, steps: int,
               clips_per_step: int, runtime: Runtime) -> float:
    """clips/s of ``steps`` steps after ``warmup`` untimed ones (synchronised on CUDA)."""
    cuda = runtime.device.type == "cuda"
    for _ in range(warmup):
        step(next(batches))
    if cuda:
        torch.cuda.synchronize(runtime.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    if cuda:
        torch.cuda.synchronize(runtime.device)
    return steps * clips_per_step / (time.perf_counter() - start)


def _precision(amp: bool, cuda: bool) -> str:
    if amp:
        return "bf16 autocast"
    return "fp32 (TF32 allowed)" if cuda else "fp32"


def run_train_bench(config: TrainBenchConfig, work_dir: str | Path) -> dict[str, Any]:
    """Run the training benchmark.

    Args:
        config: settings (None fields resolved for the device).
        work_dir: the benchmarks' work folder (dataset for the end-to-end rows).

    Returns:
        The result document; ``summary`` holds the peak rates, FLOPs per clip and each setting's loader overhead.

    Raises:
        RuntimeError: ``device="cuda"`` without a GPU.
    """
    machine = machine_info()
    probe = setup_runtime(RuntimeConfig(device=config.device, amp=False, channels_last=False))
    cuda = probe.device.type == "cuda"
    config = config.resolved(cuda)
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def peak_now(amp: bool) -> float:
        """The matmul rate measured now, beside the model's timing (the load drifts on a shared machine)."""
        name, dtype = ("bf16", torch.bfloat16) if amp else ("fp32", torch.float32)
        peaks[name].append(matmul_flops_per_s(probe.device, dtype, n=config.matmul_size, repeats=3))
        return peaks[name][-1]

    data = prepare_dataset(work_dir, config.dataset) if config.end_to_end else None
    reader = ClipReader(data.store, threads=config.loader_threads) if data else None
    rows: list[dict[str, Any]] = []
    flops: dict[str, dict[str, float]] = {}
    overhead: dict[str, float] = {}
    try:
        for task in config.tasks:
            k = TASKS[task]
            batch = config.pretrain_batch if task == "pretrain" else config.finetune_batch
            clips_per_step = 2 * batch if task == "pretrain" else batch
            flops[task] = training_flops_per_clip(task, clip_len=k, size=config.size)
            for amp in (True, False):
                for channels_last in config.channels_last:
                    memory_format = "channels_last_3d" if channels_last else "contiguous"
                    common = dict(precision=_precision(amp, cuda), memory_format=memory_format,
                                  device=probe.device.type, batch=clips_per_step, size=config.size, clip_len=k,
                                  steps=config.steps)
                    if amp not in config.amp:
                        reason = ("bf16 autocast is CUDA-only in this benchmark (the trainer keeps CPU runs fp32)"
                                  if not cuda else "not asked for (--amp)")
                        rows.append(row(f"{task}, model only and end to end", None, skipped=reason, **common))
                        continue
                    runtime = setup_runtime(RuntimeConfig(device=probe.device.type, amp=amp,
                                                          channels_last=channels_last))
                    sources: list[tuple[str, Callable[[int], Iterator[tuple]]]] = [
                        ("model only", lambda r: synthetic_batches(task, batch, config.size, runtime, config.seed)),
                    ]
                    if reader is not None:
                        sources.append(("end to end", lambda r: loader_batches(
                            task, reader, batch, config.warmup_steps + config.steps, config, runtime, r)))
                    _, step = build_step(task, runtime, config.seed)  # one model for both sources: same compute
                    values: dict[str, list[float]] = {label: [] for label, _ in sources}
                    round_peaks = []
                    for r in range(config.repeats):  # in rounds, so that load drift hits both sources alike
                        round_peaks.append(peak_now(amp))
                        for label, make_batches in sources:
                            batches = make_batches(r)
                            values[label].append(time_steps(step, batches, warmup=config.warmup_steps,
                                                            steps=config.steps, clips_per_step=clips_per_step,
                                                            runtime=runtime))
                            if hasattr(batches, "close"):
                                batches.close()
                    stats_of = {}
                    for label, _ in sources:
                        stats = Stats(tuple(values[label]), config.warmup_steps, "clips/s")
                        # MFU per round against the matmul rate measured in that round, then the median
                        mfu = [v * flops[task]["training"] / p for v, p in zip(values[label], round_peaks)]
                        rows.append(row(f"{task}, {label}", stats, flops_per_clip=flops[task]["training"],
                                        achieved_flops_per_s=stats.median * flops[task]["training"],
                                        mfu=float(np.median(mfu)), mfu_values=mfu, peak_flops_per_s_values=round_peaks,
                                        threads=config.loader_threads if label == "end to end" else None, **common))
                        stats_of[label] = stats
                    if "end to end" in stats_of:
                        model_only, e2e = stats_of["model only"], stats_of["end to end"]
                        noise = max(model_only.iqr_fraction, e2e.iqr_fraction)
                        value = 1.0 - e2e.median / model_only.median
                        overhead[f"{task}, {_precision(amp, cuda)}, {memory_format}"] = {
                            "overhead": value, "relative_iqr": noise, "within_noise": abs(value) <= noise,
                            "overhead_per_round": [1.0 - e / m for e, m in zip(e2e.values, model_only.values)]}
    finally:
        if reader is not None:
            reader.close()
    summary = {
        "peak_matmul_flops_per_s": {k: float(np.median(v)) for k, v in peaks.items() if v},
        "peak_note": "median of the matmul rates measured at the start of every round; each row's MFU is the "
                     "median over rounds of (clips/s x FLOPs per clip / that round's matmul rate)",
        "flops_per_clip": flops,
        "loader_overhead": overhead,
        "loader_overhead_note": (
            "overhead = 1 - (end to end clips/s) / (model only clips/s); relative_iqr = the larger IQR / median of "
            "the two rows; within_noise: |overhead| <= relative_iqr. DESIGN.md target: <= 5% on one H100"),
        "targets": {"pretrain_end_to_end_h100_clips_per_s": 6000, "finetune_h100_clips_per_s": 1500},
    }
    settings = {**config.to_json(), "device_resolved": probe.device.type}
    if not cuda:
        settings["cpu_preset"] = (
            f"short CPU run, not the paper's settings: batch {config.pretrain_batch} pairs / {config.finetune_batch} "
            f"clips, {config.size} px, {config.steps} timed steps per repeat; on CUDA the defaults are 392 pairs / "
            "88 clips at 112 px"
        )
    return make_result("train", machine=machine, settings=settings, rows=rows, summary=summary, quick=config.quick)
