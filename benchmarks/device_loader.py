"""GPU rows of the device check: the device clip cache + the CUDA augmentation kernel, alone and feeding EchoCLR
pretraining (bf16 autocast, channels_last_3d), against the same model fed from GPU memory.

Runs without zarr, DALI or a store: the frames are synthetic (smooth random uint8 videos made here, the data's
content does not change the work) and live in one :class:`~echoclr.pipeline.device_cache.DeviceClipCache`; plans
come from the real sampler. Writes one JSON document (``--out``).

    python benchmarks/device_loader.py --out benchmarks/results            # on a GPU machine
    python benchmarks/device_loader.py --dry-run                           # any machine: checks every step's inputs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from echoclr.data.sampling import SamplerConfig, plan_epoch
from echoclr.pipeline.device_cache import cache_bytes, frame_offsets, gather_clips, gather_index

TARGET_CLIPS_PER_S = 6000.0
TARGET_LOADER_SHARE = 0.05


class MemoryFrames:
    """Synthetic videos in host memory with the reader interface the cache and the staging path use."""

    def __init__(self, n_videos: int, min_frames: int, max_frames: int, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.n_frames = rng.integers(min_frames, max_frames + 1, n_videos).astype(np.int64)
        self.study_of_video = np.arange(n_videos, dtype=np.int64) // 3  # studies of 3 videos
        base = rng.integers(0, 256, (64, size, size), dtype=np.uint8)  # a pool of frames, reused
        offsets = frame_offsets(self.n_frames)
        pick = rng.integers(0, len(base), int(offsets[-1]))
        self.frames = base[pick]  # (total_frames, H, W)
        self.offsets = offsets

    def read_clips(self, videos, starts, clip_len, out=None):
        clips = gather_clips(self.frames, self.offsets, self.n_frames, np.asarray(videos), np.asarray(starts), clip_len)
        if out is None:
            return clips
        out[...] = clips
        return out


def long_plan(frames: MemoryFrames, n_items: int, seed: int) -> np.ndarray:
    from echoclr.pipeline.loaders import plan_array

    tables, total, epoch = [], 0, 0
    while total < n_items:
        plan = plan_epoch(SamplerConfig("pairs", clip_len=4, seed=seed), frames.study_of_video, frames.n_frames,
                          epoch=epoch)
        tables.append(plan_array(plan)[1])
        total += len(plan)
        epoch += 1
    return np.concatenate(tables)[:n_items]  # (n_items, 14)


def median_rate(fn, repeats: int, clips: int) -> tuple[float, list[float]]:
    values = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        values.append(clips / (time.perf_counter() - start))
    return float(np.median(values)), values


def run(args: argparse.Namespace) -> dict:
    from echoclr.bench.environment import machine_info, versions
    from echoclr.bench.flops import matmul_flops_per_s, training_flops_per_clip
    from echoclr.losses import EchoCLRLoss
    from echoclr.models import Encoder, PretrainModel
    from echoclr.pipeline.cuda_loader import DevicePairLoader
    from echoclr.pipeline.dali import dali_available
    from echoclr.pipeline.device_cache import DeviceClipCache

    device = torch.device("cuda")
    frames = MemoryFrames(args.videos, 30, 120, args.size, args.seed)
    cache = DeviceClipCache.build(frames)
    batch, steps = args.batch, args.steps
    clips_per_step = 2 * batch
    table = long_plan(frames, batch * (steps + args.warmup) * args.repeats + batch, args.seed)
    rows = []

    def loader_rate(source) -> tuple[float, list[float]]:
        loader = DevicePairLoader(source, table[: batch * (steps + args.warmup)], batch, dtype=torch.bfloat16)
        for i, _ in enumerate(loader):  # warm-up pass: kernel compile, pinned pools
            if i + 1 == args.warmup:
                break
        loader.set_plan(table[: batch * steps])
        return median_rate(lambda: [None for _ in loader], args.repeats, clips_per_step * steps)

    cached, cached_values = loader_rate(cache)
    rows.append({"name": "GPU loader alone: device cache + CUDA kernel", "clips_per_s": cached,
                 "values": cached_values, "precision": "bf16", "memory_format": "channels_last_3d"})
    staged, staged_values = loader_rate(frames)
    rows.append({"name": "GPU loader alone: host reads into pinned staging + CUDA kernel", "clips_per_s": staged,
                 "values": staged_values, "precision": "bf16", "memory_format": "channels_last_3d"})
    rows.append({"name": "GPU loader alone: DALI GPU pipeline", "status": "skipped",
                 "reason": "DALI is not installed here" if not dali_available() else
                 "DALI rows are measured by `echoclr bench loader --device cuda`"})

    torch.manual_seed(args.seed)
    model = PretrainModel(Encoder(), clip_len=4, reorder=True).to(device, memory_format=torch.channels_last_3d)
    criterion = EchoCLRLoss(temperature=0.5, reorder=True, gather=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step(x: torch.Tensor, order: torch.Tensor) -> None:
        # forward
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z, logits = model(x)
            z_i, z_j = z.float().chunk(2)
            # loss
            parts = criterion(z_i, z_j, logits.float(), order)
        # backward
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        # step
        optimizer.step()

    fixed = next(iter(DevicePairLoader(cache, table[:batch], batch, dtype=torch.bfloat16)))
    for _ in range(args.warmup):
        step(*fixed)
    model_only, model_values = median_rate(lambda: [step(*fixed) for _ in range(steps)], args.repeats,
                                           clips_per_step * steps)
    e2e_loader = DevicePairLoader(cache, table[: batch * steps], batch, dtype=torch.bfloat16)
    e2e, e2e_values = median_rate(lambda: [step(x, o) for x, o in e2e_loader], args.repeats, clips_per_step * steps)
    flops = training_flops_per_clip("pretrain", clip_len=4, size=args.size)["training"]
    peak = matmul_flops_per_s(device, torch.bfloat16, n=8192, repeats=3)
    share = 1.0 - e2e / model_only
    for name, rate, values in (("pretrain, model only", model_only, model_values),
                               ("pretrain, end to end (device cache + CUDA kernel)", e2e, e2e_values)):
        rows.append({"name": name, "clips_per_s": rate, "values": values, "mfu": rate * flops / peak,
                     "precision": "bf16 autocast", "memory_format": "channels_last_3d", "batch": clips_per_step})
    return {
        "bench": "device_loader",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions(),
        "settings": vars(args),
        "cache_bytes": cache.nbytes,
        "rows": rows,
        "summary": {
            "end_to_end_clips_per_s": e2e, "target_clips_per_s": TARGET_CLIPS_PER_S,
            "meets_clips_target": e2e >= TARGET_CLIPS_PER_S,
            "loader_share_of_step": share, "target_loader_share": TARGET_LOADER_SHARE,
            "meets_loader_target": share <= TARGET_LOADER_SHARE,
            "bf16_matmul_flops_per_s": peak, "training_flops_per_clip": flops,
        },
    }


def dry_run(args: argparse.Namespace) -> None:
    """Everything before the GPU: data, plans, the host index math of a batch, the cache size, the FLOP count."""
    from echoclr.bench.flops import training_flops_per_clip
    from echoclr.pipeline.cuda_augment import cupy_available

    frames = MemoryFrames(min(args.videos, 30), 30, 120, 16, args.seed)
    table = long_plan(frames, 4 * args.batch, args.seed)
    assert table.shape == (4 * args.batch, 14), table.shape
    index, valid = gather_index(frames.offsets, frames.n_frames, table[:, 0], table[:, 1], 4)
    assert index.shape == valid.shape == (len(table), 4) and valid[:, 0].all()
    needed = cache_bytes(np.full(args.videos, 75), args.size)  # expected size at the mean video length
    flops = training_flops_per_clip("pretrain", clip_len=4, size=args.size)["training"]
    print(f"dry run: plan {table.shape}, gather index ok, device cache ~{needed / 2**30:.2f} GiB for "
          f"{args.videos} videos, {flops / 1e9:.1f} GFLOP per training clip, cupy "
          f"{'importable' if cupy_available() else 'NOT importable (needed on the GPU machine)'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the JSON result")
    parser.add_argument("--videos", type=int, default=3000, help="synthetic videos in the device cache")
    parser.add_argument("--size", type=int, default=112, help="frame size in px")
    parser.add_argument("--batch", type=int, default=392, help="pairs per step (2 clips each)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per window")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="check the inputs of every step; no GPU needed")
    args = parser.parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return 0
    if not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --dry-run to check the steps on this machine", file=sys.stderr)
        return 2
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"device_loader-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result["summary"], indent=2, default=float))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
