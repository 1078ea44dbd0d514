"""The device clip cache: its gather (numpy twin on the CPU) equals ClipReader; on a GPU the cupy cache does too."""

from __future__ import annotations

import numpy as np
import pytest

from echoclr.pipeline.device_cache import cache_bytes, frame_offsets, gather_clips, use_device_cache


@pytest.fixture(scope="module")
def reader(tiny_store):
    from echoclr.store import ClipReader

    with ClipReader(tiny_store) as r:
        yield r


def test_numpy_gather_twin_equals_clip_reader_including_end_padding(reader):
    n_frames = np.asarray(reader.n_frames, dtype=np.int64)
    everything = [reader.read_clips(np.array([v]), np.array([0]), int(n))[0] for v, n in enumerate(n_frames)]
    frames = np.concatenate(everything)  # (total_frames, H, W)
    offsets = frame_offsets(n_frames)
    assert offsets[-1] == len(frames) and cache_bytes(n_frames, reader.size) == frames.nbytes
    rng = np.random.default_rng(0)
    videos = rng.integers(0, len(n_frames), 200)
    starts = (rng.random(200) * n_frames[videos]).astype(np.int64)  # any valid start, many past end - K
    starts[:len(n_frames)] = n_frames[: len(n_frames)] - 1  # the last frame: K - 1 padded frames
    videos[:len(n_frames)] = np.arange(len(n_frames))
    for k in (1, 4, 16):
        want = reader.read_clips(videos, starts, k)
        got = gather_clips(frames, offsets, n_frames, videos, starts, k)
        np.testing.assert_array_equal(got, want, err_msg=f"K={k}")
    assert not got[: len(n_frames), 1:].any()  # clips from the last frame are padded with zeros


def test_auto_mode_caches_only_what_fits():
    assert use_device_cache("auto", 10, 100, 0.5)
    assert not use_device_cache("auto", 60, 100, 0.5)
    assert not use_device_cache("auto", 10, None)  # no GPU
    assert not use_device_cache("off", 10, 100)
    with pytest.raises(ValueError, match="--device-cache must be one of"):
        use_device_cache("on", 10, 100)
    with pytest.raises(ValueError, match="fraction in"):
        use_device_cache("auto", 10, 100, 1.5)


def test_pair_loader_choice_follows_device_cupy_method_and_fit():
    from echoclr.pipeline.device_cache import pair_loader_kind

    def kind(mode="auto", device="cuda", plan="pairs", needed=10, free=100, cupy=True):
        return pair_loader_kind(mode, device_type=device, plan_mode=plan, needed_bytes=needed, free_bytes=free,
                                cupy=cupy)[0]

    assert kind() == "device-cache"
    assert kind(needed=60) == "pinned"  # over half of the free memory: ClipReader into pinned staging buffers
    assert kind(mode="off") == "dali"
    assert kind(device="cpu", free=None) == "dali"  # auto on a CPU device is off, silently
    assert kind(plan="single") == "dali"  # SimCLR: the device loader takes pairs plans
    assert kind(cupy=False) == "dali"
    assert "pip install 'echoclr[gpu]'" in pair_loader_kind("auto", device_type="cuda", plan_mode="pairs",
                                                             needed_bytes=1, free_bytes=100, cupy=False)[1]
    with pytest.raises(ValueError, match="--device-cache must be one of"):
        kind(mode="on")


def test_cpu_pretraining_with_device_cache_auto_uses_dali_without_a_warning(reader):
    import warnings

    import torch

    from echoclr.data import SamplerConfig, plan_epoch
    from echoclr.train.batches import PretrainBatches
    from echoclr.train.runtime import Runtime

    runtime = Runtime(torch.device("cpu"), amp=False, channels_last=False, rank=0, world_size=1, local_rank=0)
    videos = np.arange(len(reader.n_frames))
    plan = plan_epoch(SamplerConfig("pairs", seed=0), reader.study_of_video, reader.n_frames, epoch=0)
    batches = PretrainBatches(reader, videos, clip_len=4, batch_size=len(plan), runtime=runtime, threads=1,
                              device_cache="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x, order), = list(batches(plan))
    assert batches.kind == "dali" and "CPU" in batches.reason
    assert x.shape == (2 * len(plan), 1, 4, reader.size, reader.size) and order.shape == (2 * len(plan),)


class MemoryReader:
    """Videos in host memory, padded reads like ClipReader (via the numpy twin, itself tested against ClipReader)."""

    def __init__(self, n_videos: int = 20, size: int = 24, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.n_frames = rng.integers(1, 30, n_videos).astype(np.int64)
        self.offsets = frame_offsets(self.n_frames)
        self.frames = rng.integers(0, 256, (int(self.offsets[-1]), size, size), dtype=np.uint8)

    def read_clips(self, videos, starts, clip_len, out=None):
        clips = gather_clips(self.frames, self.offsets, self.n_frames, np.asarray(videos), np.asarray(starts), clip_len)
        if out is not None:
            out[...] = clips
        return clips if out is None else out


@pytest.mark.cuda
def test_cupy_cache_equals_the_host_reads():
    # no store here: the GPU machine of the device check has no video decoder to build one
    from echoclr.pipeline.device_cache import DeviceClipCache

    reader = MemoryReader()
    cache = DeviceClipCache.build(reader)
    assert cache.nbytes == cache_bytes(reader.n_frames, reader.size)
    rng = np.random.default_rng(1)
    videos = rng.integers(0, len(reader.n_frames), 100)
    starts = (rng.random(100) * reader.n_frames[videos]).astype(np.int64)
    for k in (1, 4, 16):
        np.testing.assert_array_equal(cache.read_clips(videos, starts, k).get(), reader.read_clips(videos, starts, k))


@pytest.mark.cuda
@pytest.mark.parametrize("staged", [False, True], ids=["device cache", "pinned staging"])
def test_device_pair_loader_equals_the_cpu_kernel_on_the_same_plan(staged):
    import torch

    from echoclr.data.sampling import SamplerConfig, plan_epoch
    from echoclr.pipeline.cpu_ops import FusedAugment
    from echoclr.pipeline.cuda_loader import DevicePairLoader
    from echoclr.pipeline.device_cache import DeviceClipCache
    from echoclr.pipeline.graph import MIN_RANGE
    from echoclr.pipeline.loaders import plan_array
    from echoclr.data.permutations import all_permutations
    from echoclr.pipeline.reference import AugmentParams

    reader = MemoryReader()
    study = np.arange(len(reader.n_frames)) // 2
    plan = plan_epoch(SamplerConfig("pairs", seed=3), study, reader.n_frames, epoch=1)
    source = reader if staged else DeviceClipCache.build(reader)
    loader = DevicePairLoader(source, plan, 4, drop_last=False)  # as the trainer: the last batch may be partial
    table = plan_array(plan)[1]
    seen = 0
    for b, (x, order) in enumerate(loader):
        rows = table[4 * b : 4 * b + 4]
        seen += len(rows)
        assert x.shape == (2 * len(rows), 1, 4, 24, 24) and x.is_contiguous(memory_format=torch.channels_last_3d)
        clips = reader.read_clips(np.r_[rows[:, 0], rows[:, 3]], np.r_[rows[:, 1], rows[:, 4]], 4)
        perms = np.r_[rows[:, 2], rows[:, 5]]
        np.testing.assert_array_equal(order.cpu().numpy(), perms)
        p = [AugmentParams.from_plan(*rows[:, c : c + 4].T) for c in (6, 10)]  # views i and j
        want = np.stack(FusedAugment(channels=1, mean=None, std=None, min_range=MIN_RANGE, threads=1)(
            list(clips), list(all_permutations(4)[perms].astype(np.int32)),
            list(np.r_[p[0].shift, p[1].shift].astype(np.int32)), list(np.r_[p[0].flip, p[1].flip].astype(np.int32)),
            list(np.r_[p[0].angle, p[1].angle])))  # (8, T, H, W, 1)
        got = x.permute(0, 2, 3, 4, 1).cpu().numpy()  # (8, C, T, H, W) -> (8, T, H, W, C)
        assert np.abs(got - want).max() <= 4.0 / 253 * 1.01
    assert seen == len(table)
