"""A GPU pair loader without DALI: clips gathered from the device cache (or read into pinned staging buffers),
augmented by the CUDA kernel, handed to torch without a copy.

Per batch, the host does only the plan's index arithmetic (:func:`~echoclr.pipeline.device_cache.gather_index`)
and a few small pinned, non-blocking uploads; everything else runs on torch's current CUDA stream, so a training
step that consumes these batches needs no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from echoclr.data.permutations import all_permutations
from echoclr.data.sampling import PLAN_FIELDS, view_fields
from echoclr.pipeline.checks import check_positive_int
from echoclr.pipeline.cuda_augment import CudaAugment, require_cupy
from echoclr.pipeline.device_cache import DeviceClipCache, gather_index
from echoclr.pipeline.graph import AugmentParams, KINETICS_MEAN, KINETICS_STD, MIN_RANGE
from echoclr.pipeline.loaders import builds, plan_array


class DevicePairLoader:
    """Two augmented views per item (as :class:`~echoclr.pipeline.PairLoader` yields them), on one GPU.

    Args:
        source: a :class:`DeviceClipCache` (no host reads per step), or a host reader (``ClipReader``-like, with
            ``read_clips(videos, starts, clip_len, out=)``) read into pinned staging buffers.
        plan: a pairs plan (``EpochPlan`` or int array ``(M, 14)``); :meth:`set_plan` swaps it between epochs.
        batch_size: items per batch (each gives 2 clips).
        clip_len: frames per clip K (``K <= 5``: frame orders are numbered).
        channels: 1, or 3 with ``kinetics`` standardisation optional.
        kinetics: standardise with the Kinetics-400 mean/std (needs ``channels=3``).
        dtype: ``torch.float32`` or ``torch.bfloat16`` clips.
        device: the CUDA device.
        drop_last: drop a last partial batch (False: every item is used, the last batch may be smaller).

    Raises:
        ValueError: a plan that is not a pairs plan, or bad sizes.
        CupyNotAvailableError: cupy cannot be imported.

    Yields:
        ``(x, order)``: ``x`` ``(2n, C, T, H, W)`` channels_last_3d on ``device``, views ``i`` then views ``j``;
        ``order`` int64 ``(2n,)``.
    """

    def __init__(self, source: Any, plan: Any, batch_size: int, *, clip_len: int = 4, channels: int = 1,
                 kinetics: bool = False, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cuda", drop_last: bool = True) -> None:
        check_positive_int("batch_size", batch_size)
        self._cp = require_cupy()
        self._source = source
        self._batch_size = batch_size
        self._clip_len = clip_len
        self._dtype = dtype
        self._device = torch.device(device)
        self._drop_last = bool(drop_last)
        self._orders = all_permutations(clip_len).astype(np.int32)  # (K!, K)
        self._kernel = CudaAugment(channels=channels, mean=KINETICS_MEAN if kinetics else None,
                                   std=KINETICS_STD if kinetics else None, min_range=MIN_RANGE)
        self._staging: list[torch.Tensor] = []  # pinned uint8 clip buffers (host reader only), used in turn
        self._staged: list[torch.cuda.Event | None] = []  # the copy that last read each buffer
        self._turn = 0
        self.set_plan(plan)
        builds[(type(self).__name__, "loader")] += 1

    def set_plan(self, plan: Any) -> None:
        """Walk ``plan`` in the next passes (e.g. the next epoch's)."""
        mode, table = plan_array(plan)
        if mode != "pairs":
            raise ValueError(f"DevicePairLoader takes a pairs plan, got a {mode} plan")
        self._plan = table

    def __len__(self) -> int:
        n = len(self._plan)
        return n // self._batch_size if self._drop_last else -(-n // self._batch_size)

    def _upload(self, host: np.ndarray) -> Any:
        """A small host array as a cupy array on the device: pinned, non-blocking, on torch's stream."""
        pinned = torch.from_numpy(np.ascontiguousarray(host)).pin_memory()
        return self._cp.from_dlpack(pinned.to(self._device, non_blocking=True))

    def _clips(self, videos: np.ndarray, starts: np.ndarray) -> Any:
        cp, k = self._cp, self._clip_len
        if isinstance(self._source, DeviceClipCache):
            cache = self._source
            index, valid = gather_index(cache.offsets, cache.n_frames, videos, starts, k)  # host: (2n, K) each
            rows = self._upload(np.where(valid, index, -1))  # -1 marks frames past the end
            clips = cache.frames[cp.maximum(rows, 0)]  # (2n, K) -> (2n, K, H, W)
            clips *= (rows >= 0)[:, :, None, None].astype(cp.uint8)  # zero padding past the end
            return clips
        # host reader: into a pinned staging buffer; two buffers in turn, each reused once the copy that read it
        # (two batches back) has finished
        slot = self._turn % 2
        self._turn += 1
        shape = (len(videos), k, int(self._source.size), int(self._source.size))
        if len(self._staging) <= slot or tuple(self._staging[slot].shape) != shape:
            self._staging[slot:slot + 1] = [torch.empty(shape, dtype=torch.uint8, pin_memory=True)]
            self._staged[slot:slot + 1] = [None]
        if self._staged[slot] is not None:
            self._staged[slot].synchronize()
        buffer = self._staging[slot]
        self._source.read_clips(videos, starts, k, out=buffer.numpy())
        on_device = buffer.to(self._device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._staged[slot] = event
        return cp.from_dlpack(on_device)

    def _batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        cp, k = self._cp, self._clip_len
        col = PLAN_FIELDS["pairs"].index
        videos = np.concatenate([rows[:, col("video_i")], rows[:, col("video_j")]])  # (2n,) views i then j
        starts = np.concatenate([rows[:, col("start_i")], rows[:, col("start_j")]])
        perms = np.concatenate([rows[:, col("perm_i")], rows[:, col("perm_j")]])
        views = np.concatenate([rows[:, [col(f) for f in view_fields("i")]],
                                rows[:, [col(f) for f in view_fields("j")]]])  # (2n, 4)
        params = AugmentParams.from_plan(*views.T)
        ints = np.concatenate([self._orders[perms], params.shift, params.flip[:, None]], axis=1)  # (2n, K + 3)
        with cp.cuda.ExternalStream(torch.cuda.current_stream(self._device).cuda_stream):
            ints = self._upload(ints.astype(np.int32))
            angles = self._upload(params.angle)
            clips = self._clips(videos, starts)  # uint8 (2n, K, H, W) on the device
            out = self._kernel(clips, ints[:, :k], ints[:, k : k + 2], ints[:, k + 2], angles)  # (2n, K, H, W, C)
            # handed over on the stream it was made on: no wait is inserted
            x = torch.from_dlpack(out).permute(0, 4, 1, 2, 3)  # (2n, K, H, W, C) -> (2n, C, K, H, W), cl3d
        if self._dtype != torch.float32:
            x = x.to(self._dtype)  # preserve_format keeps the strides
        order = torch.from_numpy(perms.astype(np.int64)).pin_memory().to(self._device, non_blocking=True)
        return x, order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self._batch_size
        with torch.cuda.device(self._device):
            for b in range(len(self)):
                batch = self._batch(self._plan[b * n : (b + 1) * n])
                yield batch
