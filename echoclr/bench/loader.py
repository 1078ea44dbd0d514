"""Loader benchmark: clips/s in EchoCLR ``pairs`` mode, the reference-style loader against echoclr's pipelines.

Rows (same data, same clip mode, same number of CPU workers ``W``):

- ``reference loader``: :mod:`echoclr.bench.reference_loader` in a ``DataLoader`` with ``W`` worker processes;
- ``echoclr CPU pipeline``: :class:`~echoclr.store.ClipReader` + :class:`~echoclr.pipeline.PairLoader`, DALI on
  the CPU with ``W`` threads;
- ``echoclr GPU pipeline``: the same with DALI on GPU 0 (skipped without CUDA);
- breakdown of the CPU pipeline: the reader alone, and the DALI pipeline alone fed from clips in memory.

The headline is (CPU pipeline) / (reference), target >= 20x (DESIGN.md). When it is missed (or ``profile`` is
set) the run adds a profile (:mod:`echoclr.bench.loader_profile`). Every row also reports the CPU milliseconds
a clip cost, which depend far less on what else the machine runs than clips/s do.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echoclr.bench.data import DEFAULT_SPEC, QUICK_SPEC, DatasetSpec, prepare_dataset
from echoclr.bench.environment import machine_info
from echoclr.bench.reference_loader import export_store_as_avis, reference_loader
from echoclr.bench.results import make_result, row
from echoclr.bench.timing import Stats
from echoclr.bench.windows import Window, time_window
from echoclr.data.sampling import SamplerConfig, plan_epoch
from echoclr.pipeline import AugmentConfig, AugmentParams, ClipPipeline, LoaderConfig, PairLoader, plan_array
from echoclr.store import ClipReader, open_store

TARGET_RATIO = 20.0
"""DESIGN.md: the CPU loader must reach >= 20x the reference-style loader on the same cores."""

DISABLE_NATIVE_AUGMENT = "ECHOCLR_DISABLE_NATIVE_AUGMENT"
"""Environment switch: ``1`` makes the echoclr rows use DALI's own CPU operators instead of the native kernel."""


def cpu_augment_kernel() -> str:
    """The CPU augmentation the echoclr rows run: ``"fused"`` (the native kernel, the pipeline's default), or
    ``"dali"`` (DALI's own CPU operators, several times slower) when ``ECHOCLR_DISABLE_NATIVE_AUGMENT=1``.

    The switch is a deliberate, known slowdown for checking that ``echoclr bench compare`` catches a regression;
    the result's ``settings.cpu_augment`` records which kernel ran.
    """
    return "dali" if os.environ.get(DISABLE_NATIVE_AUGMENT, "").strip() not in ("", "0") else "fused"


@dataclass(frozen=True)
class LoaderBenchConfig:
    """Settings of the loader benchmark.

    Attributes:
        dataset: the synthetic dataset.
        workers: CPU workers for every row: reference ``DataLoader`` processes; echoclr reader and DALI threads.
        batch_size: pairs per batch (2 clips each).
        clip_len: K frames per clip (EchoCLR: 4).
        warmup_batches: batches consumed before each timed window (pipeline build, worker start, first fill).
        batches: batches timed per repeat for the echoclr rows.
        reference_batches: batches timed per repeat for the (much slower) reference row.
        repeats: timed windows per row.
        seed: sampler and augmentation seed.
        profile: add the profile section; None = only when the target ratio is missed.
        quick: a smoke run (its numbers are not comparable; the result file is named ``loader-quick-...``).
    """

    dataset: DatasetSpec = DEFAULT_SPEC
    workers: int = 2
    batch_size: int = 32
    clip_len: int = 4
    warmup_batches: int = 3
    batches: int = 30
    reference_batches: int = 8
    repeats: int = 5
    seed: int = 0
    profile: bool | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "batches", "reference_batches", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LoaderBenchConfig.{name} must be an int >= 1, got {value!r}")
        if not 2 <= self.clip_len <= 5:
            raise ValueError(f"LoaderBenchConfig.clip_len must be in [2, 5] (pairs mode reorders frames), "
                             f"got {self.clip_len}")
        if self.warmup_batches < 1:
            raise ValueError(f"LoaderBenchConfig.warmup_batches must be >= 1 (the first batch pays for start-up), "
                             f"got {self.warmup_batches}")

    @classmethod
    def smoke(cls, **overrides: Any) -> "LoaderBenchConfig":
        """A smoke-run config: tiny dataset, small batches, one or two repeats."""
        base = cls(dataset=QUICK_SPEC, batch_size=8, warmup_batches=1, batches=4, reference_batches=2, repeats=2,
                   quick=True)
        return replace(base, **overrides)

    @classmethod
    def gate(cls, **overrides: Any) -> "LoaderBenchConfig":
        """The ``make bench`` preset: the full dataset and batch size, 5 rounds, shorter windows (12 batches, 3 for
        the reference), no profile; a real measurement in about two minutes, compared with
        ``benchmarks/baselines/``."""
        base = cls(warmup_batches=2, batches=12, reference_batches=3, repeats=5, profile=False)
        return replace(base, **overrides)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pair_table(reader: ClipReader, *, clip_len: int, seed: int, n_items: int) -> np.ndarray:
    """Consecutive epochs of an EchoCLR pairs plan over the whole store, at least ``n_items`` rows.

    Returns:
        int64 ``(M, 6)``: video_i, start_i, perm_i, video_j, start_j, perm_j.

    Raises:
        ValueError: the store has no study with a pair (should not happen: a single-video study pairs with itself).
    """
    sampler = SamplerConfig("pairs", clip_len=clip_len, seed=seed)
    tables, total, epoch = [], 0, 0
    while total < n_items:
        _, table = plan_array(plan_epoch(sampler, reader.study_of_video, reader.n_frames, epoch=epoch))
        if len(table) == 0:
            raise ValueError("the pairs plan of the benchmark store is empty")
        tables.append(table)
        total += len(table)
        epoch += 1
    return np.concatenate(tables)  # epochs stacked: (sum M_e, 6)


def _two_views(batch: Any) -> int:
    return 2 * len(batch[0])


def _window_row(name: str, windows: list[Window], warmup: int, **fields: Any) -> dict[str, Any]:
    stats = Stats(tuple(w.clips / w.seconds for w in windows), warmup, "clips/s")
    cpu = [w.cpu_ms_per_clip for w in windows]
    return row(name, stats, cpu_ms_per_clip=float(np.median(cpu)), cpu_ms_per_clip_values=cpu, **fields)


REFERENCE_NAME = "reference loader (DataLoader, decode whole AVI, scipy cubic rotate)"
CPU_NAME = "echoclr CPU pipeline (ClipReader + PairLoader, DALI CPU)"
GPU_NAME = "echoclr GPU pipeline (ClipReader + PairLoader, DALI GPU)"


def reference_window(pairs: list[tuple[str, str]], config: LoaderBenchConfig, repeat: int) -> Window:
    """One timed window of the reference-style loader: a ``DataLoader`` with ``config.workers`` processes over
    ``pairs`` (AVI paths); its CPU time includes the worker processes."""
    loader = reference_loader(pairs, batch_size=config.batch_size, workers=config.workers,
                              clip_len=config.clip_len, seed=config.seed + repeat)
    batches = iter(loader)
    try:
        return time_window(batches, warmup=config.warmup_batches, measured=config.reference_batches,
                           clips_in=_two_views, children=True)
    finally:
        del batches  # shuts the worker processes down


def _loader_config(config: LoaderBenchConfig, device_id: int | None) -> LoaderConfig:
    return LoaderConfig(
        clip_len=config.clip_len, device_id=device_id, num_threads=config.workers,
        read_workers=max(1, config.workers // 2), cpu_rotate=cpu_augment_kernel(),
    )


def echoclr_window(
    reader: ClipReader, table: np.ndarray, config: LoaderBenchConfig, device_id: int | None, repeat: int
) -> Window:
    """One timed window of :class:`PairLoader` (CPU pipeline, or GPU ``device_id``) over ``table``."""
    sync = torch.cuda.synchronize if device_id is not None else None
    loader = PairLoader(reader, table, config.batch_size, _loader_config(config, device_id))
    batches = iter(loader)
    try:
        # PairLoader yields (x, order) with both views in x
        return time_window(batches, warmup=config.warmup_batches, measured=config.batches,
                           clips_in=lambda batch: len(batch[0]), sync=sync)
    finally:
        batches.close()


def compare_loaders(
    reader: ClipReader, table: np.ndarray, paths: list[str], config: LoaderBenchConfig, *, gpu: bool
) -> dict[str, list[Window]]:
    """Windows of the reference, the CPU pipeline and (with ``gpu``) the GPU pipeline, measured in rounds.

    Each round times every loader once, so a change of the machine's load during the run affects all alike.
    """
    pairs = [(paths[int(i)], paths[int(j)]) for i, j in table[:, [0, 3]]]
    windows: dict[str, list[Window]] = {REFERENCE_NAME: [], CPU_NAME: []}
    if gpu:
        windows[GPU_NAME] = []
    for repeat in range(config.repeats):
        # the reference's DataLoader forks its workers: let no finished DALI pipeline linger with its threads
        gc.collect()
        windows[REFERENCE_NAME].append(reference_window(pairs, config, repeat))
        windows[CPU_NAME].append(echoclr_window(reader, table, config, None, repeat))
        if gpu:
            windows[GPU_NAME].append(echoclr_window(reader, table, config, 0, repeat))
    return windows


def reader_batches(table: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(videos, starts) of each batch as :class:`PairLoader` reads them: views i, then views j."""
    for b in range(len(table) // batch_size):
        rows = table[b * batch_size : (b + 1) * batch_size]
        yield np.concatenate([rows[:, 0], rows[:, 3]]), np.concatenate([rows[:, 1], rows[:, 4]])


def bench_reader(reader: ClipReader, table: np.ndarray, config: LoaderBenchConfig) -> dict[str, Any]:
    """The reader alone: ``read_clips`` of each batch's clips, ``config.workers`` threads."""
    windows = []
    for _ in range(config.repeats):
        reads = (reader.read_clips(v, s, config.clip_len) for v, s in reader_batches(table, config.batch_size))
        windows.append(time_window(reads, warmup=config.warmup_batches, measured=config.batches,
                                   clips_in=len))
    return _window_row("  breakdown: ClipReader.read_clips alone", windows, config.warmup_batches,
                       precision="uint8", memory_format="(N, K, H, W)", device="cpu", batch=2 * config.batch_size,
                       workers=None, threads=config.workers)


def memory_batches(
    reader: ClipReader, table: np.ndarray, config: LoaderBenchConfig, n_distinct: int = 8
) -> list[tuple[np.ndarray, np.ndarray, AugmentParams]]:
    """A few real batches read into memory, with the plan's parameters: ``(clips uint8 (2B, K, H, W),
    orders int32 (2B, K), params of 2B clips)`` each (views i, then views j)."""
    from echoclr.data.permutations import all_permutations
    from echoclr.data.sampling import PLAN_FIELDS, view_fields

    orders_of = all_permutations(config.clip_len).astype(np.int32)  # (K!, K)
    col = PLAN_FIELDS["pairs"].index
    out = []
    for b, (videos, starts) in enumerate(reader_batches(table, config.batch_size)):
        if b == n_distinct:
            break
        rows = table[b * config.batch_size : (b + 1) * config.batch_size]
        perms = np.concatenate([rows[:, col("perm_i")], rows[:, col("perm_j")]])
        views = np.concatenate([rows[:, [col(n) for n in view_fields("i")]], rows[:, [col(n) for n in view_fields("j")]]])
        params = AugmentParams.from_plan(*views.T)  # (2B, 4) -> dy, dx, flip, angle_mdeg
        out.append((reader.read_clips(videos, starts, config.clip_len), orders_of[perms], params))
    return out


def dali_windows(
    batches: list[tuple[np.ndarray, np.ndarray, AugmentParams]],
    config: LoaderBenchConfig,
    *,
    augment: AugmentConfig,
    cpu_rotate: str | None = None,
    rotate: bool = True,
) -> list[Window]:
    """The DALI CPU pipeline alone, fed from ``batches`` in memory (cycled), one window per repeat; ``cpu_rotate``
    None is :func:`cpu_augment_kernel`; ``rotate=False`` zeroes the batches' rotation angles."""
    cpu_rotate = cpu_augment_kernel() if cpu_rotate is None else cpu_rotate
    if not rotate:
        batches = [(c, o, replace(p, angle=np.zeros_like(p.angle))) for c, o, p in batches]
    # a few more batches than the window consumes: DALI's read-ahead stays full to the end of the window
    n_calls = config.warmup_batches + config.batches + 4

    def source_of() -> Any:
        calls = iter(range(n_calls))

        def source() -> tuple[np.ndarray, np.ndarray, AugmentParams]:
            i = next(calls)  # StopIteration ends the pipeline
            return batches[i % len(batches)]

        return source

    windows = []
    for repeat in range(config.repeats):
        pipe = ClipPipeline(source_of(), batch_size=len(batches[0][0]), augment=augment, num_threads=config.workers,
                            seed=config.seed + repeat, cpu_rotate=cpu_rotate)
        windows.append(time_window(iter(pipe), warmup=config.warmup_batches, measured=config.batches,
                                   clips_in=lambda out: len(out[0])))
    return windows


def bench_dali(reader: ClipReader, table: np.ndarray, config: LoaderBenchConfig) -> dict[str, Any]:
    """The DALI CPU pipeline alone (paper augmentation), fed from clips in memory."""
    windows = dali_windows(memory_batches(reader, table, config), config, augment=AugmentConfig())
    return _window_row("  breakdown: DALI CPU pipeline alone (clips in memory)", windows, config.warmup_batches,
                       precision="float32", memory_format="channels_last_3d", device="cpu",
                       batch=2 * config.batch_size, workers=None, threads=config.workers,
                       threads_cpu_seconds=windows[len(windows) // 2].threads)


def run_loader_bench(config: LoaderBenchConfig, work_dir: str | Path) -> dict[str, Any]:
    """Run the loader benchmark.

    Args:
        config: settings.
        work_dir: the benchmarks' work folder (dataset, store and AVIs are made there or reused).

    Returns:
        The result document (see :mod:`echoclr.bench.results`); ``summary`` holds the ratio and, when profiled,
        where the time goes.
    """
    machine = machine_info()
    data = prepare_dataset(work_dir, config.dataset)
    paths = export_store_as_avis(open_store(data.store), data.root / "avi")
    need = (config.warmup_batches + max(config.batches, config.reference_batches) + 8) * config.batch_size
    rows: list[dict[str, Any]] = []
    with ClipReader(data.store, threads=config.workers) as reader:
        table = pair_table(reader, clip_len=config.clip_len, seed=config.seed, n_items=need)
        cuda = torch.cuda.is_available()
        windows = compare_loaders(reader, table, paths, config, gpu=cuda)
        reference = _window_row(REFERENCE_NAME, windows[REFERENCE_NAME], config.warmup_batches, precision="float32",
                                memory_format="contiguous", device="cpu", batch=2 * config.batch_size,
                                workers=config.workers, threads=None)
        ours = _window_row(CPU_NAME, windows[CPU_NAME], config.warmup_batches, precision="float32",
                           memory_format="channels_last_3d", device="cpu", batch=2 * config.batch_size, workers=None,
                           threads=config.workers,
                           threads_cpu_seconds=windows[CPU_NAME][len(windows[CPU_NAME]) // 2].threads)
        if cuda:
            gpu = _window_row(GPU_NAME, windows[GPU_NAME], config.warmup_batches, precision="float32",
                              memory_format="channels_last_3d", device="cuda", batch=2 * config.batch_size,
                              workers=None, threads=config.workers)
        else:
            gpu = row(GPU_NAME, None, precision="float32", memory_format="channels_last_3d", device="cuda",
                      skipped="no GPU (torch.cuda unavailable)")
        reader_row, dali_row = bench_reader(reader, table, config), bench_dali(reader, table, config)
        rows += [reference, ours, gpu, reader_row, dali_row]
        ratio = ours["median"] / reference["median"]
        cost_ratio = reference["cpu_ms_per_clip"] / ours["cpu_ms_per_clip"]
        summary: dict[str, Any] = {
            "headline": "echoclr CPU pipeline / reference loader, clips/s",
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "target_met": ratio >= TARGET_RATIO,
            "cpu_cost_ratio": cost_ratio,
            "cpu_cost_note": "reference CPU ms per clip / echoclr CPU ms per clip (process + workers, all threads)",
            "ratio_per_round": [o.clips / o.seconds / (r.clips / r.seconds)
                                for o, r in zip(windows[CPU_NAME], windows[REFERENCE_NAME])],
        }
        if gpu["status"] == "ok":
            summary["gpu_ratio"] = gpu["median"] / reference["median"]
        if config.profile or (config.profile is None and ratio < TARGET_RATIO):
            from echoclr.bench.loader_profile import profile_loader

            profile_rows, profile = profile_loader(
                reader, table, paths, config, reference_cpu_ms=reference["cpu_ms_per_clip"],
                ours=windows[CPU_NAME][len(windows[CPU_NAME]) // 2], reader_cpu_ms=reader_row["cpu_ms_per_clip"],
                dali_cpu_ms=dali_row["cpu_ms_per_clip"])
            rows += profile_rows
            summary["profile"] = profile
        epoch_pairs = len(plan_epoch(SamplerConfig("pairs", clip_len=config.clip_len, seed=config.seed),
                                     reader.study_of_video, reader.n_frames, epoch=0))
    settings = {**config.to_json(), "n_videos": len(paths), "n_pairs_per_epoch": epoch_pairs,
                "cpu_augment": cpu_augment_kernel(),
                "reference_input": "112x112 MJPG AVIs exported from the store",
                "page_cache": "inputs are read repeatedly and stay in the page cache: this measures CPU, not disk"}
    return make_result("loader", machine=machine, settings=settings, rows=rows, summary=summary, quick=config.quick)
