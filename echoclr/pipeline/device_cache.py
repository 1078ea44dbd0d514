"""A device clip cache: every frame of a split in one GPU buffer (cupy), batches gathered there.

The paper's whole training set (~23k videos, ~17 GB uint8 at 112x112) fits in one H200's memory, so the frames
are read once, into one ``(total_frames, H, W)`` uint8 buffer with per-video frame offsets, and each batch is a
gather on the GPU: no host reads or copies per step. Clips that run past a video's end are zero-padded, exactly
as :meth:`echoclr.store.ClipReader.read_clips` pads them.

The gather's index math (:func:`gather_index`) is array-module generic: numpy on the host (its twin
:func:`gather_clips`, tested against ``ClipReader`` on the CPU) and cupy on the device run the same code.

cupy is optional: importing this module never imports it (see :func:`~echoclr.pipeline.cuda_augment.require_cupy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from echoclr.pipeline.cuda_augment import require_cupy

DeviceCacheMode = Literal["auto", "off"]
DEVICE_CACHE_MODES: tuple[str, ...] = ("auto", "off")
DEFAULT_BUDGET_FRACTION = 0.5
"""Share of the GPU's free memory the cache may take in ``auto`` mode (the rest is the model's)."""


def frame_offsets(n_frames: np.ndarray) -> np.ndarray:
    """Start of each video's frames in the cache buffer: int64 ``(n_videos + 1,)``, the last = total frames."""
    n_frames = np.asarray(n_frames, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(n_frames)]).astype(np.int64)


def gather_index(offsets: Any, n_frames: Any, videos: Any, starts: Any, clip_len: int, xp: Any = np) -> tuple[Any, Any]:
    """Rows of the cache buffer that hold each clip's frames, and which of them exist.

    Args:
        offsets: int64 ``(n_videos + 1,)`` from :func:`frame_offsets`.
        n_frames: int64 ``(n_videos,)``.
        videos: int64 ``(N,)`` video of each clip.
        starts: int64 ``(N,)`` first frame of each clip, in ``[0, n_frames)``.
        clip_len: K.
        xp: the array module of the arguments (numpy or cupy).

    Returns:
        ``(index, valid)``: int64 ``(N, K)`` buffer rows (clamped to the video's last frame where the clip runs
        past its end) and bool ``(N, K)``, False for frames past the end (to be zeroed).
    """
    frame = starts[:, None] + xp.arange(clip_len, dtype=xp.int64)[None, :]  # (N, 1) + (1, K) -> (N, K)
    length = n_frames[videos][:, None]  # (N,) -> (N, 1)
    valid = frame < length
    index = offsets[videos][:, None] + xp.minimum(frame, length - 1)  # (N, K)
    return index, valid


def gather_clips(frames: Any, offsets: Any, n_frames: Any, videos: Any, starts: Any, clip_len: int,
                 xp: Any = np) -> Any:
    """Clips from a cache buffer: uint8 ``(N, K, H, W)``, frames past a video's end zero (as ``ClipReader``).

    Args:
        frames: uint8 ``(total_frames, H, W)``, the videos' frames one after another.
        offsets, n_frames, videos, starts, clip_len, xp: as for :func:`gather_index`.

    Returns:
        uint8 ``(N, K, H, W)`` in the array module ``xp``.
    """
    index, valid = gather_index(offsets, n_frames, videos, starts, clip_len, xp)
    clips = frames[index]  # (N, K) rows -> (N, K, H, W)
    clips *= valid[:, :, None, None].astype(xp.uint8)  # zero padding past the end
    return clips


def cache_bytes(n_frames: np.ndarray, size: int) -> int:
    """Bytes of the cache buffer for videos of ``n_frames`` frames of ``size x size`` px."""
    return int(np.asarray(n_frames, dtype=np.int64).sum()) * int(size) * int(size)


def use_device_cache(mode: str, needed_bytes: int, free_bytes: int | None,
                     fraction: float = DEFAULT_BUDGET_FRACTION) -> bool:
    """Whether to cache the split on the GPU.

    Args:
        mode: ``"auto"`` (cache when it fits in ``fraction`` of the free GPU memory) or ``"off"``.
        needed_bytes: :func:`cache_bytes` of the split.
        free_bytes: free GPU memory, or None without a GPU.
        fraction: share of the free memory the cache may take, in (0, 1].

    Returns:
        True to build a :class:`DeviceClipCache`; False to read with ``ClipReader`` into pinned staging buffers.

    Raises:
        ValueError: an unknown mode or a fraction outside (0, 1].
    """
    if mode not in DEVICE_CACHE_MODES:
        raise ValueError(f"--device-cache must be one of {DEVICE_CACHE_MODES}, got {mode!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the device cache budget must be a fraction in (0, 1] of free GPU memory, got {fraction!r}")
    return mode == "auto" and free_bytes is not None and needed_bytes <= fraction * free_bytes


PAIR_LOADER_KINDS: tuple[str, ...] = ("device-cache", "pinned", "dali")


def pair_loader_kind(mode: str, *, device_type: str, plan_mode: str, needed_bytes: int, free_bytes: int | None,
                     cupy: bool, fraction: float = DEFAULT_BUDGET_FRACTION) -> tuple[str, str]:
    """Which pair loader a pretraining run uses, and why (``--device-cache``).

    Args:
        mode: ``"auto"`` or ``"off"``.
        device_type: the run's torch device type, ``"cuda"`` or ``"cpu"``.
        plan_mode: the run's plan mode, ``"pairs"`` (EchoCLR, MI-SimCLR) or ``"single"`` (SimCLR).
        needed_bytes: :func:`cache_bytes` of the split.
        free_bytes: free GPU memory, or None without a GPU.
        cupy: whether cupy can be imported.
        fraction: share of the free memory the cache may take.

    Returns:
        ``(kind, reason)``: ``"device-cache"`` (the split in GPU memory, :class:`DevicePairLoader` and the CUDA
        kernel), ``"pinned"`` (:class:`DevicePairLoader` reading into pinned staging buffers: the split does not
        fit) or ``"dali"`` (:class:`PairLoader`): ``off``, a CPU device (``auto`` means ``off`` there), a SimCLR
        plan (the device loader takes pairs plans) or no cupy.

    Raises:
        ValueError: an unknown mode or a fraction outside (0, 1].
    """
    fits = use_device_cache(mode, needed_bytes, free_bytes, fraction)  # validates mode and fraction
    if mode == "off":
        return "dali", "--device-cache off"
    if device_type != "cuda":
        return "dali", "a CPU device has no device cache"
    if plan_mode != "pairs":
        return "dali", "the device loader takes pairs plans (EchoCLR, MI-SimCLR), not SimCLR's"
    if not cupy:
        return "dali", "cupy is not installed (pip install 'echoclr[gpu]')"
    if fits:
        return "device-cache", f"the split's {needed_bytes / 2**30:.2f} GiB fit in {fraction:g} of free GPU memory"
    return "pinned", f"the split's {needed_bytes / 2**30:.2f} GiB do not fit in {fraction:g} of free GPU memory"


@dataclass
class DeviceClipCache:
    """Every frame of some videos in one GPU buffer, read once; ``read_clips`` gathers on the GPU.

    Attributes:
        frames: uint8 cupy ``(total_frames, H, W)``.
        offsets: int64 ``(n_videos + 1,)`` (host and device copies).
        n_frames: int64 ``(n_videos,)`` (host and device copies).
    """

    frames: Any
    offsets: np.ndarray
    n_frames: np.ndarray

    def __post_init__(self) -> None:
        cp = require_cupy()
        self._offsets = cp.asarray(self.offsets)
        self._n_frames = cp.asarray(self.n_frames)

    @classmethod
    def build(cls, reader: Any, *, chunk_videos: int = 64) -> DeviceClipCache:
        """Read every video of ``reader`` (a ``ClipReader`` or ``SubsetReader``) into one GPU buffer.

        Args:
            reader: has ``n_frames`` (per video), ``size`` and ``read_clips``.
            chunk_videos: videos read per host round trip.

        Returns:
            The cache; its video ``v`` is the reader's video ``v``.

        Raises:
            CupyNotAvailableError: cupy cannot be imported.
        """
        cp = require_cupy()
        n_frames = np.asarray(reader.n_frames, dtype=np.int64)
        offsets = frame_offsets(n_frames)
        size = int(reader.size)
        frames = cp.empty((int(offsets[-1]), size, size), cp.uint8)
        for first in range(0, len(n_frames), chunk_videos):
            for v in range(first, min(first + chunk_videos, len(n_frames))):
                clip = reader.read_clips(np.array([v]), np.array([0]), int(n_frames[v]))[0]  # (n_frames[v], H, W)
                frames[offsets[v] : offsets[v + 1]].set(clip)
        return cls(frames=frames, offsets=offsets, n_frames=n_frames)

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    def read_clips(self, videos: Any, starts: Any, clip_len: int) -> Any:
        """uint8 cupy ``(N, K, H, W)``; frames past a video's end are zero (as ``ClipReader.read_clips``).

        Args:
            videos: int64 ``(N,)`` (host or device).
            starts: int64 ``(N,)`` (host or device).
            clip_len: K.
        """
        cp = require_cupy()
        videos = cp.asarray(videos, dtype=cp.int64)
        starts = cp.asarray(starts, dtype=cp.int64)
        return gather_clips(self.frames, self._offsets, self._n_frames, videos, starts, clip_len, xp=cp)
