"""Loaders: iterables of augmented torch batches built from (reader, epoch plan, batch size).

Each loader walks an epoch plan from :mod:`echoclr.data.sampling` in order, reads the
clips of upcoming batches in a small thread pool while DALI processes earlier ones (DALI
itself runs ``prefetch_queue_depth`` batches ahead of the consumer), and yields tensors
on the output device: ``(N, C, T, H, W)`` clips with ``torch.channels_last_3d`` strides,
plus int64/float32 vectors.

A plan is an :class:`echoclr.data.sampling.EpochPlan` or an int array with one row per
item and the columns of :data:`echoclr.data.sampling.PLAN_FIELDS`:

- pairs mode ``(M, 14)``: video_i, start_i, perm_i, video_j, start_j, perm_j, then
  dy, dx, flip, angle_mdeg of view i and of view j;
- single mode ``(M, 12)``: video, start, perm_a, perm_b, then the four of view a and of view b;
- eval mode ``(M, 3)``: video, start, clip_index.

``perm`` columns number frame orders as :mod:`echoclr.data.permutations` does (0 = identity).
Every random parameter of a clip is in its row, so the loaders draw nothing, and a resumed
run passes the rest of the epoch's plan (``plan[k:]``) and gets what the uninterrupted run
got.

A loader is built once per run: :meth:`set_plan` gives it the next epoch's plan and each
iteration is one pass over the current plan, through one DALI pipeline built at the first
pass and reused by every later one (:attr:`pipeline_builds` counts builds; :data:`builds` counts the
loaders and pipelines of the whole process, by loader class, so a test can check that a trainer reuses them).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from echoclr.data.permutations import MAX_REORDER_CLIP_LEN, all_permutations
from echoclr.data.sampling import PLAN_FIELDS, view_fields
from echoclr.pipeline.checks import check_pipeline_args, check_positive_int
from echoclr.pipeline.dali import ClipPipeline
from echoclr.pipeline.graph import AugmentParams, AugmentConfig

_MODE_OF_WIDTH = {len(fields): mode for mode, fields in PLAN_FIELDS.items()}

builds: Counter[tuple[str, str]] = Counter()
"""Loaders and DALI pipelines built in this process: ``builds[(class name, "loader" | "pipeline")]``, e.g.
``builds[("PairLoader", "pipeline")]``. Never reset; compare before and after."""


def plan_array(plan: Any) -> tuple[str, np.ndarray]:
    """The mode and the int64 ``(M, n_fields)`` table of an epoch plan.

    Args:
        plan: an ``EpochPlan`` (``mode`` and ``fields``) or an int array ``(M, 6 | 4 | 3)``
            whose width gives the mode (pairs, single, eval).

    Returns:
        ``(mode, table)`` with columns in ``PLAN_FIELDS[mode]`` order.

    Raises:
        ValueError: not a plan (wrong type, width or dtype).
    """
    if hasattr(plan, "mode") and hasattr(plan, "fields"):
        mode = plan.mode
        if mode not in PLAN_FIELDS:
            raise ValueError(f"plan mode must be one of {tuple(PLAN_FIELDS)}, got {mode!r}")
        # (M,) per field -> (M, n_fields)
        table = np.stack([np.asarray(plan.fields[name]) for name in PLAN_FIELDS[mode]], axis=1)
    else:
        table = np.asarray(plan)
        if table.ndim != 2 or table.shape[1] not in _MODE_OF_WIDTH:
            widths = ", ".join(f"{len(f)} ({m}: {', '.join(f)})" for m, f in PLAN_FIELDS.items())
            raise ValueError(f"a plan array must be 2-D with {widths} columns, got shape {table.shape}")
        mode = _MODE_OF_WIDTH[table.shape[1]]
    if table.dtype.kind not in "iu":
        raise ValueError(f"plan columns must be integers, got {table.dtype}")
    return mode, table.astype(np.int64, copy=False)


class ClipReaderLike(Protocol):
    """What the loaders need from a reader (:class:`echoclr.store.reader.ClipReader` is one).

    ``read_clips`` is called from worker threads, possibly concurrently.
    """

    study_of_video: Any
    """int64 ``(n_videos,)``: study index of each video."""

    def read_clips(self, videos: np.ndarray, starts: np.ndarray, clip_len: int) -> np.ndarray:
        """uint8 ``(N, clip_len, H, W)``; frames past a video's end are zero."""
        ...

    def labels(self, name: str) -> np.ndarray:
        """float32 ``(n_videos,)``, NaN = unknown."""
        ...


@dataclass(frozen=True)
class LoaderConfig:
    """How loaders read, augment and deliver clips.

    Attributes:
        clip_len: frames per clip (the paper: 4 for pretraining, 16 for fine-tuning).
        augment: augmentation parameters (the eval loader always turns augmentation off
            and keeps ``channels``/``kinetics_norm``).
        device_id: None = CPU pipeline and CPU tensors; ``k`` = GPU pipeline, tensors on
            ``cuda:k``.
        dtype: clip dtype, ``"float32"`` or ``"bfloat16"``.
        num_threads: DALI CPU worker threads.
        read_workers: threads that call ``reader.read_clips``.
        read_ahead: batches read ahead of the batch DALI asks for next.
        prefetch_queue_depth: batches DALI processes ahead of the consumer.
        cpu_rotate: rotation kernel of the CPU pipeline, ``"fused"`` or ``"dali"``.
    """

    clip_len: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device_id: int | None = None
    dtype: str = "float32"
    num_threads: int = 2
    read_workers: int = 2
    read_ahead: int = 2
    prefetch_queue_depth: int = 2
    cpu_rotate: str = "fused"

    def __post_init__(self) -> None:
        for name in ("clip_len", "read_workers"):
            check_positive_int(f"LoaderConfig.{name}", getattr(self, name))
        if isinstance(self.read_ahead, bool) or not isinstance(self.read_ahead, int) or self.read_ahead < 0:
            raise ValueError(f"LoaderConfig.read_ahead must be an int >= 0 (batches), got {self.read_ahead!r}")
        if not isinstance(self.augment, AugmentConfig):
            raise ValueError(f"LoaderConfig.augment must be an AugmentConfig, got {type(self.augment).__name__}")
        # the pipeline's own arguments: the same check ClipPipeline makes, run here so a bad config fails early
        check_pipeline_args(num_threads=self.num_threads, prefetch_queue_depth=self.prefetch_queue_depth,
                            device_id=self.device_id, dtype=self.dtype, cpu_rotate=self.cpu_rotate,
                            owner="LoaderConfig.")

    @property
    def device(self) -> torch.device:
        """The torch device the loaders deliver tensors on."""
        return torch.device("cpu") if self.device_id is None else torch.device("cuda", self.device_id)


class _ReadAhead:
    """DALI batch callback that serves batches read ahead by a thread pool, in order."""

    def __init__(self, read: Callable[[int], Any], n_batches: int, depth: int, workers: int) -> None:
        self._read = read
        self._n = n_batches
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="echoclr-readahead")
        self._pending: deque[Future] = deque()
        self._submitted = 0

    def __call__(self) -> Any:
        # DALI calls this serially from the thread that runs the pipeline; keep the batch
        # asked for now plus `depth` more in flight
        while self._submitted < self._n and len(self._pending) <= self._depth:
            self._pending.append(self._pool.submit(self._read, self._submitted))
            self._submitted += 1
        if not self._pending:
            raise StopIteration
        return self._pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _ClipLoader:
    """Shared machinery: plan checks, batching, read-ahead, one reused pipeline, device hand-off."""

    _modes: tuple[str, ...] = ()

    def __init__(
        self,
        reader: ClipReaderLike,
        plan: Any,
        batch_size: int,
        config: LoaderConfig,
        *,
        drop_last: bool,
        augment: AugmentConfig,
    ) -> None:
        check_positive_int("batch_size", batch_size)
        if not isinstance(config, LoaderConfig):
            raise ValueError(f"config must be a LoaderConfig, got {type(config).__name__}")
        self._reader = reader
        self._batch_size = int(batch_size)
        self._config = config
        self._augment = augment
        self._drop_last = bool(drop_last)
        self._device = config.device
        self._pipe: ClipPipeline | None = None
        self._source: _ReadAhead | None = None
        self._passes_open = 0
        self.pipeline_builds = 0
        """DALI pipelines this loader has built (one per run unless a pass was abandoned)."""
        self.set_plan(plan)
        builds[(type(self).__name__, "loader")] += 1

    def set_plan(self, plan: Any) -> None:
        """Make ``plan`` the one the next passes walk (e.g. the next epoch's); the pipeline is kept.

        Args:
            plan: a plan of a mode this loader takes (``EpochPlan`` or int array, see the module doc).

        Raises:
            ValueError: bad plan (mode, shape, negative index, frame order out of range), or
                ``drop_last`` with fewer items than one batch.
        """
        self._mode, self._plan = self._check_plan(plan)
        self._fields = PLAN_FIELDS[self._mode]
        if self._drop_last and len(self._plan) < self._batch_size:
            raise ValueError(
                f"batch_size {self._batch_size} is larger than the plan's {len(self._plan)} items and "
                "drop_last=True, so the epoch would be empty; lower the batch size or set drop_last=False"
            )
        self._order_table = self._make_order_table()
        self._on_plan()

    def _on_plan(self) -> None:
        """Per-plan checks and column lookups of a subclass."""

    def _col(self, name: str) -> int:
        return self._fields.index(name)

    def _check_plan(self, plan: Any) -> tuple[str, np.ndarray]:
        loader = type(self).__name__
        mode, table = plan_array(plan)
        if mode not in self._modes:
            raise ValueError(f"{loader} takes a {' or '.join(self._modes)} plan, got a {mode} plan")
        for col, name in enumerate(PLAN_FIELDS[mode]):
            if len(table) and name in ("video", "start", "video_i", "start_i", "video_j", "start_j") and (
                table[:, col].min() < 0
            ):
                row = int(np.argmin(table[:, col]))
                raise ValueError(f"{loader} plan column {name!r} must be >= 0, got {table[row, col]} in row {row}")
        return mode, table

    def _make_order_table(self) -> np.ndarray | None:
        k = self._config.clip_len
        perm_columns = [c for c, name in enumerate(self._fields) if name.startswith("perm")]
        if not perm_columns or not len(self._plan):
            return None
        perms = self._plan[:, perm_columns]
        if k > MAX_REORDER_CLIP_LEN:
            if perms.any():
                row, col = (int(v) for v in np.argwhere(perms != 0)[0])
                raise ValueError(
                    f"plan column {self._fields[perm_columns[col]]!r} row {row} asks for frame order "
                    f"{perms[row, col]}, but clip_len {k} > {MAX_REORDER_CLIP_LEN} has no frame-order classes; "
                    "build the plan without frame reordering (all perms 0)"
                )
            return np.arange(k, dtype=np.int32)[None]  # (1, k): only the identity
        table = all_permutations(k).astype(np.int32)  # (k!, k)
        if perms.min() < 0 or perms.max() >= len(table):
            row, col = (int(v) for v in np.argwhere((perms < 0) | (perms >= len(table)))[0])
            raise ValueError(
                f"plan column {self._fields[perm_columns[col]]!r} row {row} holds frame order "
                f"{perms[row, col]}, outside [0, {len(table)}) = [0, {k}!) for clip_len {k}"
            )
        return table

    def __len__(self) -> int:
        n = len(self._plan)
        return n // self._batch_size if self._drop_last else math.ceil(n / self._batch_size)

    @property
    def pipeline_batch_size(self) -> int:
        """Clips per DALI batch (twice the item batch for two-view loaders)."""
        return self._batch_size

    def _rows(self, b: int) -> np.ndarray:
        return self._plan[b * self._batch_size : (b + 1) * self._batch_size]

    def _read(self, videos: np.ndarray, starts: np.ndarray) -> np.ndarray:
        k = self._config.clip_len
        clips = self._reader.read_clips(videos, starts, k)
        if not isinstance(clips, np.ndarray) or clips.ndim != 4 or clips.shape[:2] != (len(videos), k):
            raise ValueError(
                f"reader.read_clips returned {getattr(clips, 'shape', type(clips).__name__)}, "
                f"expected uint8 ({len(videos)}, {k}, H, W)"
            )
        return clips

    def _orders(self, perm_idx: np.ndarray) -> np.ndarray:
        assert self._order_table is not None
        return self._order_table[perm_idx]  # (n,) -> (n, clip_len)

    def _params(self, rows: np.ndarray, suffix: str) -> AugmentParams:
        dy, dx, flip, mdeg = (rows[:, self._col(name)] for name in view_fields(suffix))
        return AugmentParams.from_plan(dy, dx, flip, mdeg)

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
        if self._device.type == "cuda":
            tensor = tensor.pin_memory()  # a non_blocking copy from pageable memory would be synchronous
        return tensor.to(self._device, non_blocking=True)

    def _read_batch(self, b: int) -> tuple[np.ndarray, np.ndarray | None, AugmentParams | None]:
        raise NotImplementedError

    def _emit(self, rows: np.ndarray, x: torch.Tensor) -> tuple:
        raise NotImplementedError

    def _next_source_batch(self) -> Any:
        assert self._source is not None
        return self._source()

    def _pipeline(self) -> ClipPipeline:
        if self._pipe is not None and self._passes_open == 0:
            self._pipe.reset()
            return self._pipe
        cfg = self._config
        # a pass abandoned mid-way leaves batches in the old pipeline's queues: start afresh
        self._pipe = ClipPipeline(
            self._next_source_batch,
            batch_size=self.pipeline_batch_size,
            augment=self._augment,
            device_id=cfg.device_id,
            num_threads=cfg.num_threads,
            prefetch_queue_depth=cfg.prefetch_queue_depth,
            dtype=cfg.dtype,
            cpu_rotate=cfg.cpu_rotate,
        )
        self._passes_open = 0
        self.pipeline_builds += 1
        builds[(type(self).__name__, "pipeline")] += 1
        return self._pipe

    def __iter__(self) -> Iterator[tuple]:
        n_batches = len(self)
        if n_batches == 0:
            return
        cfg = self._config
        pipe = self._pipeline()
        self._source = _ReadAhead(self._read_batch, n_batches, cfg.read_ahead, cfg.read_workers)
        self._passes_open += 1
        try:
            for b in range(n_batches):
                x, _params = next(pipe)
                yield self._emit(self._rows(b), x)
            # the source is exhausted: the pipeline ends the pass and can be reset for the next one
            for _ in pipe:
                raise AssertionError("the pipeline yielded more batches than the plan holds")
            self._passes_open -= 1
        finally:
            self._source.close()


class PairLoader(_ClipLoader):
    """Two augmented views per item, for contrastive pretraining.

    From a pairs-mode plan (EchoCLR, MI-SimCLR) the views are clips of the two videos of
    each pair, with the plan's orders and augmentation of views ``i`` and ``j``; from a
    single-mode plan (SimCLR) they are two augmentations (views ``a`` and ``b``) of one clip
    (read once). Both views of a batch run through the pipeline as one batch of ``2 * n``
    clips, views ``i`` first, and are yielded as that one batch: the layout the model and
    NT-Xent consume, without a concatenation copy.

    Args:
        reader: clip reader, see :class:`ClipReaderLike`.
        plan: pairs or single plan (``EpochPlan`` or int array, see the module doc); a
            resumed run passes the rest of the epoch's plan.
        batch_size: items per batch (each gives 2 clips).
        config: loader configuration.
        drop_last: drop a last partial batch.

    Raises:
        ValueError: bad plan (mode, shape, negative index, frame order out of range), bad sizes.

    Yields:
        ``(x, order)``: ``x`` float ``(2n, C, T, H, W)`` channels_last_3d, rows ``0..n-1``
        the views ``i`` of the items and rows ``n..2n-1`` their views ``j``; ``order`` int64
        ``(2n,)`` frame-order classes in the same order; on the output device.
    """

    _modes = ("pairs", "single")

    def __init__(
        self,
        reader: ClipReaderLike,
        plan: Any,
        batch_size: int,
        config: LoaderConfig = LoaderConfig(),
        *,
        drop_last: bool = True,
    ) -> None:
        super().__init__(reader, plan, batch_size, config, drop_last=drop_last, augment=config.augment)

    def _on_plan(self) -> None:
        self._views = ("i", "j") if self._mode == "pairs" else ("a", "b")
        self._perm_cols = tuple(self._col(f"perm_{v}") for v in self._views)

    @property
    def pipeline_batch_size(self) -> int:
        return 2 * self._batch_size

    def _read_batch(self, b: int) -> tuple[np.ndarray, np.ndarray, AugmentParams]:
        rows = self._rows(b)
        perms = np.concatenate([rows[:, self._perm_cols[0]], rows[:, self._perm_cols[1]]])  # (2n,)
        if self._mode == "pairs":
            col = self._col
            videos = np.concatenate([rows[:, col("video_i")], rows[:, col("video_j")]])  # views i, then views j
            starts = np.concatenate([rows[:, col("start_i")], rows[:, col("start_j")]])
            clips = self._read(videos, starts)
        else:
            clip = self._read(rows[:, self._col("video")], rows[:, self._col("start")])
            clips = np.concatenate([clip, clip])  # (n, T, H, W) -> (2n, T, H, W): one clip, two views
        first, second = (self._params(rows, v) for v in self._views)
        params = AugmentParams(
            shift=np.concatenate([first.shift, second.shift]),  # (2n, 2)
            flip=np.concatenate([first.flip, second.flip]),
            angle=np.concatenate([first.angle, second.angle]),
        )
        return clips, self._orders(perms), params

    def _emit(self, rows: np.ndarray, x: torch.Tensor) -> tuple:
        n = len(rows)
        assert x.shape[0] == 2 * n, (x.shape, n)
        order = np.concatenate([rows[:, self._perm_cols[0]], rows[:, self._perm_cols[1]]])  # (2n,)
        return x, self._to_device(order)


class SingleLoader(_ClipLoader):
    """One augmented clip per item, with an optional label, for fine-tuning.

    The clip gets the plan's ``perm_a`` frame order (0 = none; fine-tuning plans are made
    with ``reorder=False``) and view ``a``'s augmentation. For SimCLR's two views of one
    clip use :class:`PairLoader` with the same plan.

    Args:
        reader: clip reader, see :class:`ClipReaderLike`.
        plan: single plan (``EpochPlan`` or int array ``(M, 12)``).
        batch_size: clips per batch.
        config: loader configuration.
        label: label name for ``reader.labels``; None yields no label.
        drop_last: drop a last partial batch.

    Raises:
        ValueError: bad plan or sizes; a planned video has no ``label`` value (NaN) or is
            outside the label array.

    Yields:
        ``(x, label)``: ``x`` float ``(n, C, T, H, W)`` channels_last_3d; ``label`` float32
        ``(n,)`` or None; on the output device.
    """

    _modes = ("single",)

    def __init__(
        self,
        reader: ClipReaderLike,
        plan: Any,
        batch_size: int,
        config: LoaderConfig = LoaderConfig(),
        *,
        label: str | None = None,
        drop_last: bool = True,
    ) -> None:
        self._label = label
        self._labels: np.ndarray | None = None
        super().__init__(reader, plan, batch_size, config, drop_last=drop_last, augment=config.augment)

    def _on_plan(self) -> None:
        if self._label is not None:
            self._labels = self._check_labels(self._label)

    def _check_labels(self, name: str) -> np.ndarray:
        values = np.asarray(self._reader.labels(name), dtype=np.float32)
        videos = self._plan[:, self._col("video")]
        if values.ndim != 1:
            raise ValueError(f"reader.labels({name!r}) must be 1-D (one value per video), got shape {values.shape}")
        if len(videos) and videos.max() >= len(values):
            raise ValueError(f"plan video {videos.max()} is outside reader.labels({name!r}) with {len(values)} videos")
        missing = np.isnan(values[videos])
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} planned clips have no {name!r} label (NaN), e.g. video "
                f"{videos[np.argmax(missing)]}; build the fine-tuning plan from labelled videos only"
            )
        return values

    def _read_batch(self, b: int) -> tuple[np.ndarray, np.ndarray, AugmentParams]:
        rows = self._rows(b)
        clips = self._read(rows[:, self._col("video")], rows[:, self._col("start")])
        return clips, self._orders(rows[:, self._col("perm_a")]), self._params(rows, "a")

    def _emit(self, rows: np.ndarray, x: torch.Tensor) -> tuple:
        assert x.shape[0] == len(rows), (x.shape, len(rows))
        label = None if self._labels is None else self._to_device(self._labels[rows[:, self._col("video")]])
        return x, label


class EvalLoader(_ClipLoader):
    """Un-augmented clips with their video and study, for inference.

    Augmentation is off whatever ``config.augment.enabled`` says (only normalisation and
    the channel options apply), so the output is deterministic.

    Args:
        reader: clip reader, see :class:`ClipReaderLike` (``study_of_video`` is used).
        plan: eval plan (``EpochPlan`` or int array ``(M, 3)``).
        batch_size: clips per batch.
        config: loader configuration.
        drop_last: drop a last partial batch (default False: every clip is scored).

    Raises:
        ValueError: bad plan or sizes; a planned video outside ``reader.study_of_video``.

    Yields:
        ``(x, video_idx, study_idx)``: ``x`` float ``(n, C, T, H, W)`` channels_last_3d on
        the output device; int64 ``(n,)`` numpy indices (on the host: the caller groups
        scores by them, so they never make a round trip through the GPU).
    """

    _modes = ("eval",)

    def __init__(
        self,
        reader: ClipReaderLike,
        plan: Any,
        batch_size: int,
        config: LoaderConfig = LoaderConfig(),
        *,
        drop_last: bool = False,
    ) -> None:
        self._study_of_video = np.asarray(reader.study_of_video, dtype=np.int64)
        super().__init__(
            reader, plan, batch_size, config, drop_last=drop_last, augment=replace(config.augment, enabled=False)
        )

    def _on_plan(self) -> None:
        videos = self._plan[:, self._col("video")]
        if len(videos) and videos.max() >= len(self._study_of_video):
            raise ValueError(
                f"plan video {videos.max()} is outside reader.study_of_video with {len(self._study_of_video)} videos"
            )

    def _read_batch(self, b: int) -> tuple[np.ndarray, None, None]:
        rows = self._rows(b)
        return self._read(rows[:, self._col("video")], rows[:, self._col("start")]), None, None

    def _emit(self, rows: np.ndarray, x: torch.Tensor) -> tuple:
        assert x.shape[0] == len(rows), (x.shape, len(rows))
        videos = rows[:, self._col("video")].copy()
        return x, videos, self._study_of_video[videos]
