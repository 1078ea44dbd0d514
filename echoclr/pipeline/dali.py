"""DALI pipeline construction around :func:`augment_graph`, and conversion to torch.

DALI is optional at import time: nothing here imports it until a pipeline is built,
and building one without DALI raises :class:`DaliNotAvailableError` with the install
command.

Outputs reach torch without a copy: the pipeline runs DALI's dynamic executor, whose
output buffers stay valid for as long as they are referenced, and the dense
``(n, T, H, W, C)`` batch is wrapped by DLPack (CPU and GPU alike) and permuted to
``(n, C, T, H, W)``, which is the channels-last-3d view of the same memory.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch

from echoclr.errors import EchoclrError
from echoclr.pipeline.checks import OUTPUT_DTYPES, check_pipeline_args, check_positive_int
from echoclr.pipeline.graph import AugmentParams, SOURCE_LAYOUT, AugmentConfig, GraphInputs, augment_graph

ClipSource = Callable[[], tuple[np.ndarray, "np.ndarray | None", "AugmentParams | None"]]
"""Zero-argument batch callback: ``(clips uint8 (n, T, H, W), orders int (n, T) or None,
params AugmentParams of n clips or None)``; raises StopIteration at the end of the data."""


class DaliNotAvailableError(EchoclrError, ImportError):
    """NVIDIA DALI is needed for the clip pipeline but cannot be imported."""


def require_dali() -> ModuleType:
    """Import NVIDIA DALI or fail with an actionable message.

    Returns:
        The ``nvidia.dali`` module (with ``fn``, ``types`` and ``math`` loaded).

    Raises:
        DaliNotAvailableError: DALI is not installed or cannot be loaded.
    """
    try:
        dali = importlib.import_module("nvidia.dali")
        for sub in ("fn", "types", "math"):
            importlib.import_module(f"nvidia.dali.{sub}")
    except ImportError as err:
        raise DaliNotAvailableError(
            f"NVIDIA DALI is required for the echoclr clip pipeline but could not be imported ({err}). "
            "Install it with `pip install nvidia-dali-cuda130` or `pip install 'echoclr[dali]'` "
            "(Linux x86_64/aarch64; the same wheel runs CPU pipelines on machines without a GPU)."
        ) from err
    return dali


def dali_available() -> bool:
    """Whether NVIDIA DALI can be imported (never raises).

    Returns:
        True when :func:`require_dali` would succeed.
    """
    try:
        require_dali()
    except DaliNotAvailableError:
        return False
    return True


class ClipPipeline:
    """A DALI pipeline that augments batches of clips from a callback, yielding torch tensors.

    Single pass: iterating runs the pipeline until ``source`` raises StopIteration.
    DALI calls ``source`` ahead of consumption (``prefetch_queue_depth`` batches), so
    its processing of the next batches overlaps the consumer's work on this one.

    Args:
        source: batch callback, see :data:`ClipSource`. Each call returns 1..batch_size
            clips of one shape ``(T, H, W)``; ``orders`` (output frame ``t`` = input frame
            ``orders[i, t]``) and ``params`` are required when augmentation is enabled,
            ignored otherwise. The pipeline draws nothing itself.
        batch_size: largest number of clips per call.
        augment: augmentation parameters.
        device_id: None for a CPU pipeline with CPU outputs; ``k`` to process on GPU ``k``
            (outputs on ``cuda:k``).
        num_threads: DALI CPU worker threads.
        seed: DALI pipeline seed (the graph has no random operators; outputs depend only
            on the inputs).
        prefetch_queue_depth: batches DALI processes ahead of the consumer.
        dtype: output dtype, ``"float32"`` or ``"bfloat16"``.
        cpu_rotate: rotation kernel of a CPU pipeline, ``"fused"`` (the native kernel, fast) or ``"dali"``
            (``fn.rotate``, as the GPU pipeline uses); see :func:`augment_graph`.

    Raises:
        DaliNotAvailableError: DALI cannot be imported.
        ValueError: a bad argument (named in the message).

    Yields:
        ``(x, params)``: ``x`` float ``(n, C, T, H, W)`` with ``torch.channels_last_3d``
        strides; ``params`` the :class:`AugmentParams` the source gave with the batch
        (None with augmentation off).
    """

    def __init__(
        self,
        source: ClipSource,
        *,
        batch_size: int,
        augment: AugmentConfig,
        device_id: int | None = None,
        num_threads: int = 2,
        seed: int = 0,
        prefetch_queue_depth: int = 2,
        dtype: str = "float32",
        cpu_rotate: str = "fused",
    ) -> None:
        check_positive_int("batch_size", batch_size)
        check_pipeline_args(num_threads=num_threads, prefetch_queue_depth=prefetch_queue_depth, device_id=device_id,
                            dtype=dtype, cpu_rotate=cpu_rotate)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
            raise ValueError(f"seed must be an int in [0, 2**31), got {seed!r}")
        self._source = source
        self._batch_size = batch_size
        self._augment = augment
        self._device_id = device_id
        self._dtype = OUTPUT_DTYPES[dtype]
        self._cpu_rotate = cpu_rotate
        self._fed: deque[AugmentParams | None] = deque()  # params of batches fed, not yet yielded
        self._pipe = self._build(num_threads=num_threads, seed=int(seed), depth=prefetch_queue_depth)

    def _build(self, *, num_threads: int, seed: int, depth: int) -> Any:
        dali = require_dali()
        fn, types = dali.fn, dali.types
        augment = self._augment
        pipe = dali.Pipeline(
            batch_size=self._batch_size,
            num_threads=num_threads,
            device_id=self._device_id,
            seed=seed,
            prefetch_queue_depth=depth,
            exec_dynamic=True,  # outputs stay valid while referenced: zero-copy hand-off to torch
        )
        with pipe:
            if augment.enabled:
                clips, *inputs = fn.external_source(
                    source=self._feed,
                    num_outputs=5,
                    batch=True,
                    layout=[SOURCE_LAYOUT, "", "", "", ""],
                    dtype=[types.UINT8, types.INT32, types.INT32, types.INT32, types.FLOAT],
                )
                params = GraphInputs(*inputs)  # stay on the CPU: DALI takes argument inputs from there
            else:
                clips = fn.external_source(source=self._feed, batch=True, layout=SOURCE_LAYOUT, dtype=types.UINT8)
                params = None
            if self._device_id is not None:
                clips = clips.gpu()
            pipe.set_outputs(augment_graph(clips, params, augment, cpu_rotate=self._cpu_rotate))
        pipe.build()
        return pipe

    def _feed(self) -> Any:
        clips, orders, params = self._source()
        clips = _check_clips(clips, self._batch_size)  # (n, T, H, W), "FHW" per sample
        if not self._augment.enabled:
            self._fed.append(None)
            return clips
        n = clips.shape[0]
        orders = _check_orders(orders, n, clips.shape[1])
        if not isinstance(params, AugmentParams) or len(params.flip) != n:
            raise ValueError(f"augmentation is enabled, so the clip source must return AugmentParams of {n} clips, "
                             f"got {params!r}")
        self._fed.append(params)
        return (
            clips,
            orders,
            np.ascontiguousarray(params.shift, dtype=np.int32),  # (n, 2) as (dy, dx)
            np.ascontiguousarray(params.flip, dtype=np.int32),  # (n,)
            np.ascontiguousarray(params.angle, dtype=np.float32),  # (n,) degrees
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, AugmentParams | None]]:
        return self

    def reset(self) -> None:
        """Start a new pass after the source raised StopIteration (the pipeline is kept)."""
        self._pipe.reset()
        self._fed.clear()

    def __next__(self) -> tuple[torch.Tensor, AugmentParams | None]:
        outputs = self._pipe.run()  # host-synchronous: the data is ready when this returns
        return self._to_torch(outputs[0]), self._fed.popleft()

    def _to_torch(self, clips: Any) -> torch.Tensor:
        dense = clips.as_tensor()
        if self._device_id is None:
            x = torch.from_dlpack(dense)  # zero-copy view of DALI's buffer, (n, T, H, W, C)
        else:
            with torch.cuda.device(self._device_id):
                x = torch.from_dlpack(dense)  # zero-copy, ordered on torch's current stream
        # FHWC per sample is channels-last-3d memory order, so this permute is a free view
        x = x.permute(0, 4, 1, 2, 3)  # (n, T, H, W, C) -> (n, C, T, H, W), channels_last_3d strides
        if self._dtype != torch.float32:
            x = x.to(self._dtype)  # preserve_format keeps the channels-last strides
        return x


def _check_clips(clips: Any, batch_size: int) -> np.ndarray:
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8 or clips.ndim != 4:
        got = f"{type(clips).__name__} {getattr(clips, 'dtype', '')} shape {getattr(clips, 'shape', '')}"
        raise ValueError(f"the clip source must return uint8 arrays of shape (n, T, H, W), got {got}")
    if not 1 <= clips.shape[0] <= batch_size:
        raise ValueError(f"the clip source returned {clips.shape[0]} clips; expected 1..{batch_size} (batch_size)")
    return np.ascontiguousarray(clips)


def _check_orders(orders: Any, n: int, clip_len: int) -> np.ndarray:
    if orders is None:
        raise ValueError("augmentation is enabled, so the clip source must return frame orders, got None")
    orders = np.asarray(orders)
    if orders.shape != (n, clip_len) or orders.dtype.kind not in "iu":
        raise ValueError(
            f"frame orders must be an int array of shape ({n}, {clip_len}) (clips, frames), "
            f"got {orders.dtype} {orders.shape}"
        )
    if orders.min() < 0 or orders.max() >= clip_len:
        raise ValueError(f"frame orders must index frames 0..{clip_len - 1}, got values {orders.min()}..{orders.max()}")
    return np.ascontiguousarray(orders, dtype=np.int32)
