"""Where the loader's time goes: the reference per stage, echoclr's CPU pipeline per thread and per graph variant.

Used by :func:`echoclr.bench.loader.run_loader_bench` when the 20x target is missed (or when asked). Profiling
threads that live in DALI's C++ with cProfile shows only the consumer waiting, so this module measures instead:

- the reference, one clip at a time in this thread, stage by stage (decode, crop, flip, rotate, permute+min-max);
- echoclr's CPU time per clip by OS thread (DALI names its operator and executor threads; Python threads, the
  reader's and the fused CPU kernel's, keep the process name);
- the DALI CPU pipeline alone (clips in memory) in several graph variants: the fused native kernel
  (``cpu_rotate="fused"``, the default) and DALI's own operators (``"dali"``), with and without rotation, and
  with augmentation off (min-max only), measured in rounds.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from echoclr.bench.reference_loader import reference_stage_seconds
from echoclr.bench.results import row
from echoclr.bench.timing import Stats
from echoclr.bench.windows import Window
from echoclr.pipeline import AugmentConfig

VARIANTS: tuple[tuple[str, AugmentConfig, str, bool], ...] = (
    ("fused native kernel (default)", AugmentConfig(), "fused", True),
    ("fused native kernel, no rotation", AugmentConfig(), "fused", False),
    ("DALI operators, fn.rotate", AugmentConfig(), "dali", True),
    ("DALI operators, no rotation", AugmentConfig(), "dali", False),
    ("augmentation off (min-max only)", AugmentConfig(enabled=False), "fused", True),
)
"""(name, augmentation, CPU kernel, plan's rotations kept) of the graph variants the profile times."""


def reference_stages(paths: list[str], clip_len: int, n_clips: int, seed: int) -> dict[str, float]:
    """Mean milliseconds per reference clip by stage, single thread, over ``n_clips`` videos (cycled)."""
    rng = random.Random(seed)
    totals: dict[str, float] = {}
    for i in range(n_clips):
        for stage, seconds in reference_stage_seconds(paths[i % len(paths)], clip_len, rng).items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return {stage: 1000.0 * s / n_clips for stage, s in totals.items()}


def _per_clip(window_threads: dict[str, float], clips: int) -> dict[str, float]:
    return {name: round(1000.0 * s / clips, 4) for name, s in window_threads.items() if s > 0}


def profile_loader(
    reader: Any,
    table: np.ndarray,
    paths: list[str],
    config: Any,
    *,
    reference_cpu_ms: float,
    ours: Window,
    reader_cpu_ms: float,
    dali_cpu_ms: float,
) -> tuple[list[dict], dict]:
    """Profile rows and a summary of where the loader's time goes.

    Args:
        reader: the benchmark's :class:`~echoclr.store.ClipReader`.
        table: the pairs table the loader rows used.
        paths: AVI path per video (the reference's input).
        config: the :class:`~echoclr.bench.loader.LoaderBenchConfig`.
        reference_cpu_ms: the reference loader row's CPU ms per clip (workers included).
        ours: a timed window of echoclr's CPU pipeline (its per-thread CPU time is broken down).
        reader_cpu_ms: CPU ms per clip of the reader alone (the breakdown row).
        dali_cpu_ms: CPU ms per clip of the DALI pipeline alone, clips in memory (the breakdown row).

    Returns:
        ``(rows, profile)``: one row per graph variant (DALI alone, clips in memory); ``profile`` a JSON-ready dict
        with the reference's stages, echoclr's cost split, the variants, findings and the next step.
    """
    from echoclr.bench.loader import dali_windows, memory_batches

    batches = memory_batches(reader, table, config)
    clips_per_batch = len(batches[0][0])
    once = replace(config, repeats=1)
    measured: dict[str, list[Window]] = {name: [] for name, *_ in VARIANTS}
    for _ in range(config.repeats):  # in rounds over the variants, so that load drift hits all of them alike
        for name, augment, kernel, rotate in VARIANTS:
            measured[name] += dali_windows(batches, once, augment=augment, cpu_rotate=kernel, rotate=rotate)
    rows, variants = [], []
    for name, _, kernel, _ in VARIANTS:
        windows = measured[name]
        stats = Stats(tuple(w.clips / w.seconds for w in windows), config.warmup_batches, "clips/s")
        cpu = float(np.median([w.cpu_ms_per_clip for w in windows]))
        rows.append(row(f"  profile: DALI CPU alone, {name}", stats, precision="float32",
                        memory_format="channels_last_3d", device="cpu", batch=clips_per_batch,
                        threads=config.workers, cpu_ms_per_clip=cpu, cpu_rotate=kernel))
        variants.append({"variant": name, "clips_per_s": stats.median, "cpu_ms_per_clip": cpu})

    stages = reference_stages(paths, config.clip_len, n_clips=max(16, 2 * config.reference_batches), seed=config.seed)
    reference_ms = sum(stages.values())
    frames = float(np.mean(reader.n_frames))
    by_thread = _per_clip(ours.threads, ours.clips)
    # the loader = reader + DALI pipeline + what joins them (read-ahead threads, queues, hand-off to torch)
    parts = {
        "ClipReader": reader_cpu_ms,
        "DALI pipeline (fused kernel)": dali_cpu_ms,
        "hand-off (read-ahead, queues, torch)": max(ours.cpu_ms_per_clip - reader_cpu_ms - dali_cpu_ms, 0.0),
    }
    top = max(parts, key=parts.get)
    cost = {v["variant"]: v["cpu_ms_per_clip"] for v in variants}
    fused, dali_ops = cost["fused native kernel (default)"], cost["DALI operators, fn.rotate"]
    findings = [
        f"reference: {reference_ms:.2f} CPU ms per clip in one thread ({2 * reference_ms:.1f} per pair item); "
        f"decoding the whole video is {stages['decode whole video'] / reference_ms:.0%} of it "
        f"({frames:.0f} frames per video on average here; the cost grows with video length, echoclr's does not); "
        f"in its DataLoader it costs {reference_cpu_ms:.2f} CPU ms per clip",
        f"echoclr CPU pipeline: {ours.cpu_ms_per_clip:.3f} CPU ms per clip = "
        + " + ".join(f"{name} {ms:.3f}" for name, ms in parts.items())
        + f" (the last by difference); by OS thread alive at the window's end: {by_thread}",
        "DALI CPU alone, CPU ms per clip: " + ", ".join(f"{v['variant']} {v['cpu_ms_per_clip']:.3f}" for v in variants),
        f"the fused kernel costs {fused:.3f} CPU ms per clip against {dali_ops:.3f} for DALI's CPU operators "
        f"({dali_ops / max(fused, 1e-9):.1f}x)",
    ]
    next_step = (
        f"The largest part of echoclr's {ours.cpu_ms_per_clip:.3f} CPU ms per clip is {top} "
        f"({parts[top]:.3f} ms, {parts[top] / max(ours.cpu_ms_per_clip, 1e-9):.0%}); that is where the next gain is."
    )
    profile = {
        "reference_ms_per_clip_by_stage": stages,
        "reference_ms_per_clip": reference_ms,
        "reference_cpu_ms_per_clip_in_dataloader": reference_cpu_ms,
        "mean_frames_per_video": frames,
        "echoclr_cpu_ms_per_clip": ours.cpu_ms_per_clip,
        "echoclr_cpu_ms_per_clip_by_thread": by_thread,
        "echoclr_cpu_ms_per_clip_by_part": parts,
        "dali_graph_variants": variants,
        "findings": findings,
        "next_step": next_step,
    }
    return rows, profile
