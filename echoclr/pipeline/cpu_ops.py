"""The CPU augmentation as one fused native kernel per batch: frame order, shift, flip, rotation, min-max.

DALI 2.4's CPU backend costs a per-sample dispatch for each of the ten or so operators of the augmentation
graph, and its ``fn.rotate`` / ``fn.warp_affine`` run 30-60x slower than a plain bilinear warp. The CPU graph
(``cpu_rotate="fused"``) therefore draws the parameters with DALI's random operators and hands everything else
to :class:`FusedAugment` through one ``fn.python_function`` call per batch, which runs the C++ kernel of
``csrc/augment.cpp`` over the whole batch without the GIL, in ``threads`` threads. The GPU graph keeps DALI's
own operators.

History, measured on the 2-core benchmark VM (CPU ms per 4x112x112 clip): DALI's CPU operators 0.56-0.64; an
OpenCV/numpy kernel per clip (frames as channels of one ``cv2.warpAffine``) 0.16-0.18 alone; this C++ kernel
(see ``benchmarks/README.md`` for its numbers).

Semantics are those of :mod:`echoclr.pipeline.reference` (see :mod:`echoclr.pipeline.graph` for the order of
the steps):

- unrotated clips (angle 0) are shifted and flipped by exact copies, so they equal the reference bit for bit;
- rotated clips are sampled bilinearly in double precision with zero fill, from the shifted and flipped frame
  (pixels the crop discarded stay zero when the rotation turns them back in), and rounded half to even to
  uint8 before min-max, like the reference; they differ from it only where float rounding of the sample
  positions tips a value across a half-integer (one gray level, on a few pixels);
- min-max and standardisation use the reference's float32 operations, so they are bit-equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from echoclr.native import native


def warp_clip(clip: np.ndarray, order: np.ndarray, dy: int, dx: int, flip: bool, angle_deg: float) -> np.ndarray:
    """Frame order, shift, flip and rotation of one clip, as uint8 (the kernel's first step).

    Args:
        clip: uint8 ``(T, H, W)``.
        order: int ``(T,)``, output frame ``t`` is input frame ``order[t]``.
        dy, dx: shift in px, ``out[y, x] = in[y + dy, x + dx]`` (0 outside).
        flip: horizontal flip after the shift.
        angle_deg: rotation after the flip in degrees (0: none), bilinear, zero fill, about the frame centre,
            rounded to uint8.

    Returns:
        uint8 ``(T, H, W)``.
    """
    return native().warp_clip(clip, np.asarray(order, np.int32), int(dy), int(dx), bool(flip), float(angle_deg))


class FusedAugment:
    """The whole CPU augmentation of a batch, as a callable for ``fn.python_function``.

    Called with ``batch_processing=True``: each argument is a list with one array per clip; returns a list of
    float32 ``(T, H, W, C)`` arrays. The kernel splits the clips into ``threads`` contiguous parts and runs them
    in native threads without the GIL.

    For a batch of equal shapes (what :class:`~echoclr.pipeline.dali.ClipPipeline` feeds) the returned arrays
    are views of one batch buffer that the next call overwrites: DALI copies a python function's outputs into
    its own buffers before the call returns to the executor (``DLTensorPythonFunctionImpl::RunImpl``), and fresh
    buffers per call cost page faults.

    Args:
        channels: output channels, 1 or 3.
        mean, std: per-channel standardisation (3 values each), or None.
        min_range: guard of the min-max division.
        threads: kernel threads including the caller's.

    Raises:
        ValueError: ``channels`` is not 1 or 3, ``threads`` < 1, or ``mean``/``std`` given without 3 channels or
            with only one of them.
    """

    def __init__(
        self,
        channels: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        min_range: float,
        threads: int,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"FusedAugment channels must be 1 or 3, got {channels!r}")
        if (mean is None) != (std is None) or (mean is not None and channels != 3):
            raise ValueError("FusedAugment needs mean and std together, and only with channels=3")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"FusedAugment threads must be an int >= 1, got {threads!r}")
        self.channels = channels
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.std = None if std is None else np.asarray(std, np.float32)
        self.min_range = float(min_range)
        self.threads = threads
        self._kernel = native().augment_clips
        self._batch = np.empty((0, 0, 0, 0, channels), np.float32)

    def __call__(
        self,
        clips: list[np.ndarray],
        orders: list[np.ndarray],
        shifts: list[np.ndarray],
        flips: list[np.ndarray],
        angles: list[np.ndarray],
    ) -> list[np.ndarray]:
        n = len(clips)
        shape = (*clips[0].shape, self.channels)
        if any(c.shape != clips[0].shape for c in clips):  # a ragged batch: no shared buffer
            out = [np.empty((*c.shape, self.channels), np.float32) for c in clips]
        else:
            if self._batch.shape[1:] != shape or len(self._batch) < n:
                self._batch = np.empty((n, *shape), np.float32)
            out = list(self._batch[:n])  # (n, T, H, W, C) -> n views
        self._kernel(clips, orders, shifts, flips, angles, out, channels=self.channels, min_range=self.min_range,
                     mean=self.mean, std=self.std, threads=self.threads)
        return out
