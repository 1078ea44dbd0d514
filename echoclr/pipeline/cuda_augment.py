"""The clip augmentation as a CUDA kernel (cupy), from the same per-pixel source as the CPU kernel.

``csrc/augment_cuda.cu`` includes ``csrc/augment_pixel.h``, the per-output-pixel math that the CPU kernel
(``csrc/augment.cpp``) compiles too; cupy compiles it at run time with NVRTC (``--fmad=false``), so CPU and GPU
batches of one plan agree (within one gray level where float rounding of a rotated sample position tips a value
across a half-integer).

cupy is optional: importing this module never imports it; using the kernel without it raises
:class:`CupyNotAvailableError` with the install command.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from echoclr.pipeline.cuda_nvrtc import NVRTC_OPTIONS, kernel_source

THREADS_PER_CLIP = 256
"""Block size of the kernel (one block per clip); equals ``kThreads`` in ``augment_cuda.cu``."""


class CupyNotAvailableError(ImportError):
    """cupy is needed for the GPU device cache or the CUDA kernel but cannot be imported."""


def require_cupy() -> ModuleType:
    """Import cupy or fail with an actionable message.

    Returns:
        The ``cupy`` module.

    Raises:
        CupyNotAvailableError: cupy is not installed or cannot be loaded.
    """
    try:
        return importlib.import_module("cupy")
    except ImportError as err:
        raise CupyNotAvailableError(
            f"cupy is required for echoclr's GPU device cache and CUDA augmentation kernel but could not be "
            f"imported ({err}). Install it with `pip install 'echoclr[gpu]'` (cupy-cuda13x), or run with "
            "--device-cache off."
        ) from err


def cupy_available() -> bool:
    """Whether cupy can be imported (never raises)."""
    try:
        require_cupy()
    except CupyNotAvailableError:
        return False
    return True


class CudaAugment:
    """The whole augmentation of a batch of equal-shape clips on the GPU, in one kernel launch.

    Args:
        channels: output channels, 1 or 3 (gray replicated).
        mean, std: per-channel standardisation (3 values each), or None.
        min_range: guard of the min-max division.

    Raises:
        ValueError: ``channels`` is not 1 or 3, or ``mean``/``std`` given without 3 channels or alone.
        CupyNotAvailableError: cupy cannot be imported.
    """

    def __init__(self, channels: int, mean: Sequence[float] | None, std: Sequence[float] | None,
                 min_range: float) -> None:
        if channels not in (1, 3):
            raise ValueError(f"CudaAugment channels must be 1 or 3, got {channels!r}")
        if (mean is None) != (std is None) or (mean is not None and channels != 3):
            raise ValueError("CudaAugment needs mean and std together, and only with channels=3")
        cp = require_cupy()
        self._cp = cp
        self.channels = channels
        self.min_range = float(min_range)
        self._standardise = mean is not None
        self._mean = cp.asarray(np.asarray(mean if mean is not None else (0, 0, 0), np.float32))
        self._std = cp.asarray(np.asarray(std if std is not None else (1, 1, 1), np.float32))
        module = cp.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)
        self._kernel = module.get_function("augment_clips")

    def __call__(self, clips: Any, orders: Any, shifts: Any, flips: Any, angles: Any, out: Any = None) -> Any:
        """Augment ``clips`` on the current device and stream.

        Args:
            clips: uint8 cupy array ``(N, T, H, W)``.
            orders: int ``(N, T)`` frame orders (output frame ``t`` = input frame ``orders[i, t]``).
            shifts: int ``(N, 2)`` as ``(dy, dx)``.
            flips: ``(N,)``, nonzero = flipped.
            angles: ``(N,)`` degrees, 0 = not rotated.
            out: optional float32 cupy array ``(N, T, H, W, C)`` to write into.

        Returns:
            float32 cupy array ``(N, T, H, W, C)``.

        Raises:
            ValueError: shapes or dtypes that do not match.
        """
        cp = self._cp
        if not isinstance(clips, cp.ndarray) or clips.dtype != cp.uint8 or clips.ndim != 4:
            raise ValueError(f"clips must be a uint8 cupy array (N, T, H, W), got {type(clips).__name__} "
                             f"{getattr(clips, 'dtype', '')} {getattr(clips, 'shape', '')}")
        n, t, h, w = clips.shape
        clips = cp.ascontiguousarray(clips)
        orders = cp.ascontiguousarray(cp.asarray(orders, dtype=cp.int32))
        shifts = cp.ascontiguousarray(cp.asarray(shifts, dtype=cp.int32))
        flips = cp.ascontiguousarray(cp.asarray(flips, dtype=cp.int32))
        angles = cp.ascontiguousarray(cp.asarray(angles, dtype=cp.float32))
        if orders.shape != (n, t) or shifts.shape != (n, 2) or flips.shape != (n,) or angles.shape != (n,):
            raise ValueError(f"for {n} clips of {t} frames: orders (N, T), shifts (N, 2), flips (N,), angles (N,); "
                             f"got {orders.shape}, {shifts.shape}, {flips.shape}, {angles.shape}")
        shape = (n, t, h, w, self.channels)
        if out is None:
            out = cp.empty(shape, cp.float32)
        elif out.shape != shape or out.dtype != cp.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 cupy array {shape}, got {out.dtype} {out.shape}")
        if n:
            self._kernel(
                (n,), (THREADS_PER_CLIP,),
                (clips, orders, shifts, flips, angles, out, np.int32(t), np.int32(h), np.int32(w),
                 np.int32(self.channels), np.float32(self.min_range), np.int32(self._standardise), self._mean,
                 self._std),
            )
        return out
