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


@pytest.mark.cuda
def test_cupy_cache_equals_clip_reader(reader):
    from echoclr.pipeline.device_cache import DeviceClipCache

    cache = DeviceClipCache.build(reader)
    n_frames = np.asarray(reader.n_frames)
    rng = np.random.default_rng(1)
    videos = rng.integers(0, len(n_frames), 100)
    starts = (rng.random(100) * n_frames[videos]).astype(np.int64)
    np.testing.assert_array_equal(cache.read_clips(videos, starts, 4).get(), reader.read_clips(videos, starts, 4))
