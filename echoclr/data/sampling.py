"""Epoch plans: which clips a rank reads in one epoch, as a pure function of
``(seed, epoch, rank, world_size)`` and the store's index.

Two implementations give identical plans: the C++ one in ``csrc/sampler.cpp``
(``backend="native"``, the default) and the Python twin in this file
(``backend="python"``). The definition below is the contract between them.

Index. ``study_of_video[v]`` is the study of video ``v`` (any int64 value) and
``n_frames[v] >= 1`` its frame count. Studies are taken in ascending study value;
a study's videos in ascending video index. ``K = clip_len``; a video's last valid
start is ``L(v) = max(0, n_frames[v] - K)`` (shorter videos start at 0 and the
reader pads at the end).

Items per study (``n`` videos). ``pairs``: every unordered pair of distinct
videos, ``n(n-1)/2`` items (``n == 1``: one item pairing the video with itself);
``single``: ``n`` items (one per video); ``eval``: ``n * n_clips`` items.

Random numbers (counter-based; every value is an unsigned 64-bit integer and
arithmetic wraps mod 2**64)::

    mix64(z)     = splitmix64 finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
                   z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
    combine(h,v) = mix64(h + 0x9E3779B97F4A7C15 * (v + 1))
    key(stream, sub) = combine(combine(combine(combine(0, seed), epoch), stream), sub)
    uniform_below(key, counter, bound):       # exactly uniform in [0, bound)
        for attempt = 0, 1, ...:
            x = combine(combine(key, counter), attempt)
            if x >= (2**64 - bound) % bound: return x % bound
    shuffle(list, key): for i = len-1 .. 1: swap(list[i], list[uniform_below(key, i, i + 1)])

Streams (``sub`` is 0 unless said): 1 study order, 2 item order (``sub`` = rank),
3 pair swap, 4 start_i / start, 5 start_j, 6 perm_i / perm_a, 7 perm_j / perm_b;
augmentation, ``sub`` = view (0: ``i`` / ``a``, 1: ``j`` / ``b``): 8 dy, 9 dx,
10 flip, 11 rotate, 12 angle.

Sharding (by study, so both videos of a pair are on one rank). With
``world_size == 1`` every study is on rank 0. Otherwise the study positions
``0..S-1`` are shuffled with ``key(1, 0)`` (not in ``eval`` mode: there they
stay in order), stably sorted by item count descending, and each study is given
to the rank with the smallest ``(load, rank)``, where load counts items. After
greedy largest-first, ranks differ by at most the item count of one study and,
for realistic data that ends in many small studies, usually by 0 or 1.

Items of one rank, before ordering, and their canonical ids ``g`` (an item's id
and its random draws do not depend on ``world_size`` or ``rank``, so the union of
all shards is exactly the ``world_size == 1`` epoch):

* ``pairs``: the rank's studies in order, each study's pairs ``(a, b)`` with
  ``a < b`` in lexicographic order of the study's video positions; ``g`` = the
  number of items of all earlier studies (every rank) + the pair's position in
  its study. Order: ``shuffle(items, key(2, rank))``. Then per item:
  ``swap = uniform_below(key(3), g, 2)`` (1 makes ``b`` the video ``i``),
  ``start_i = uniform_below(key(4), g, L(video_i) + 1)``, ``start_j`` likewise
  with ``key(5)``, ``perm_i = uniform_below(key(6), g, K!)``, ``perm_j`` with
  ``key(7)``; perms are 0 when ``reorder`` is off.
* ``single``: the rank's videos ascending, ``g`` = video index; order
  ``shuffle(videos, key(2, rank))``; ``start`` with ``key(4)``, ``perm_a`` with
  ``key(6)``, ``perm_b`` with ``key(7)``.
* augmentation of both views of a ``pairs`` or ``single`` item (``g`` as above;
  all 0 when ``augment`` is None), with :class:`AugmentDraws` ``pad``, ``flip_p``,
  ``rotate_p``, ``max_angle_deg`` as the integers ``P = 2**32``,
  ``F = round(flip_p * P)``, ``R = round(rotate_p * P)``,
  ``A = round(max_angle_deg * 1000)``::

      dy = uniform_below(key(8, view), g, 2 * pad + 1) - pad
      dx = uniform_below(key(9, view), g, 2 * pad + 1) - pad
      flip = uniform_below(key(10, view), g, P) < F
      angle_mdeg = uniform_below(key(12, view), g, 2 * A) - A   if uniform_below(key(11, view), g, P) < R
                   0                                             otherwise

  ``angle_mdeg`` is the rotation in millidegrees (counter-clockwise on screen); the
  executors apply ``angle_mdeg / 1000`` degrees as float32.
* ``eval`` (no randomness): the rank's videos ascending, each with clips
  ``k = 0..n_clips-1``; ``start_k = floor(k * L / (n_clips - 1))`` (first clip at
  0, last at ``L``, evenly spaced; clips repeat when ``L + 1 < n_clips``), and
  ``start_0 = floor(L / 2)`` (the middle clip) when ``n_clips == 1``.

Resuming after item ``k`` of an epoch is ``plan[k:]``: ``start_item=k`` returns
exactly that, without planning the fields of the skipped items. Every random choice
of an item is in its row, so a resumed run needs no random state to fast-forward.

Perm numbers index :mod:`echoclr.data.permutations` (0 = identity).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from echoclr.data.permutations import MAX_REORDER_CLIP_LEN

Mode = Literal["pairs", "single", "eval"]
Backend = Literal["native", "python"]

VIEW_FIELDS: tuple[str, ...] = ("dy", "dx", "flip", "angle_mdeg")
"""Augmentation fields of one view, suffixed ``_i``/``_j`` (pairs) or ``_a``/``_b`` (single)."""


def view_fields(suffix: str) -> tuple[str, ...]:
    """The augmentation field names of one view, e.g. ``view_fields("i")`` = ``("dy_i", ...)``."""
    return tuple(f"{name}_{suffix}" for name in VIEW_FIELDS)


PLAN_FIELDS: dict[str, tuple[str, ...]] = {
    "pairs": ("video_i", "start_i", "perm_i", "video_j", "start_j", "perm_j", *view_fields("i"), *view_fields("j")),
    "single": ("video", "start", "perm_a", "perm_b", *view_fields("a"), *view_fields("b")),
    "eval": ("video", "start", "clip_index"),
}
"""Field names of an :class:`EpochPlan`, per mode, in order."""

ANGLE_UNITS_PER_DEG = 1000
"""``angle_mdeg`` fields count millidegrees."""
PROBABILITY_SCALE = 1 << 32
"""Probabilities are drawn as integers below this (see the module docstring)."""

_U64_LIMIT = 1 << 64


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class AugmentDraws:
    """Distributions of the augmentation parameters the sampler draws (defaults: the paper's).

    Attributes:
        pad: zero padding in px before the random crop back to the input size; ``dy`` and
            ``dx`` are uniform integers in ``[-pad, pad]``.
        flip_p: probability of a horizontal flip, in [0, 1].
        rotate_p: probability of a rotation, in [0, 1].
        max_angle_deg: rotation bound in degrees, in (0, 180]; rotated clips turn by an angle
            uniform in ``[-max_angle_deg, max_angle_deg)`` on a 0.001-degree grid.
    """

    pad: int = 8
    flip_p: float = 0.5
    rotate_p: float = 0.5
    max_angle_deg: float = 10.0

    def __post_init__(self) -> None:
        if not _is_int(self.pad) or self.pad < 0:
            raise ValueError(f"AugmentDraws.pad must be an int >= 0 (pixels), got {self.pad!r}")
        for name in ("flip_p", "rotate_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentDraws.{name} must be a probability in [0, 1], got {value!r}")
        angle = self.max_angle_deg
        if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not (
            0.0 < angle <= 180.0 and math.isfinite(angle)
        ) or round(angle * ANGLE_UNITS_PER_DEG) < 1:
            raise ValueError(f"AugmentDraws.max_angle_deg must be in [0.001, 180] degrees, got {angle!r}")

    def as_integers(self) -> tuple[int, int, int, int]:
        """``(pad, F, R, A)`` of the module docstring: what both backends draw with."""
        return (
            int(self.pad),
            round(self.flip_p * PROBABILITY_SCALE),
            round(self.rotate_p * PROBABILITY_SCALE),
            round(self.max_angle_deg * ANGLE_UNITS_PER_DEG),
        )


@dataclass(frozen=True)
class SamplerConfig:
    """How an epoch is planned.

    Attributes:
        mode: ``"pairs"`` (MI-SimCLR / EchoCLR: two distinct videos of a study),
            ``"single"`` (SimCLR and fine-tuning: one video, two perm draws) or
            ``"eval"`` (``n_clips`` evenly spaced clips per video, no randomness).
        clip_len: frames per clip, ``K`` (stride 1).
        seed: base seed, an int in ``[0, 2**64)``.
        reorder: draw frame orders; ``False`` makes every perm 0. With ``True``
            in ``pairs``/``single`` mode, ``clip_len`` must be <= 5 (``K!`` classes).
        n_clips: clips per video in ``eval`` mode.
        augment: distributions of the shift, flip and rotation drawn for each view of a
            ``pairs``/``single`` item; None makes every such field 0 (no augmentation).
    """

    mode: Mode
    clip_len: int = 4
    seed: int = 0
    reorder: bool = True
    n_clips: int = 4
    augment: AugmentDraws | None = AugmentDraws()

    def __post_init__(self) -> None:
        if self.mode not in PLAN_FIELDS:
            raise ValueError(f"SamplerConfig.mode must be one of {tuple(PLAN_FIELDS)}, got {self.mode!r}")
        if not _is_int(self.clip_len) or self.clip_len < 1:
            raise ValueError(f"SamplerConfig.clip_len must be an int >= 1, got {self.clip_len!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < _U64_LIMIT:
            raise ValueError(f"SamplerConfig.seed must be an int in [0, 2**64), got {self.seed!r}")
        if not isinstance(self.reorder, (bool, np.bool_)):
            raise ValueError(f"SamplerConfig.reorder must be a bool, got {self.reorder!r}")
        if not _is_int(self.n_clips) or self.n_clips < 1:
            raise ValueError(f"SamplerConfig.n_clips must be an int >= 1, got {self.n_clips!r}")
        if self.augment is not None and not isinstance(self.augment, AugmentDraws):
            raise ValueError(f"SamplerConfig.augment must be an AugmentDraws or None, got {self.augment!r}")
        if self.draws_perms and self.clip_len > MAX_REORDER_CLIP_LEN:
            raise ValueError(
                f"SamplerConfig: reorder=True with clip_len={self.clip_len} would need "
                f"{math.factorial(self.clip_len)} frame-order classes (clip_len!); at most "
                f"{MAX_REORDER_CLIP_LEN} frames are supported. Pass reorder=False for long clips "
                "(e.g. 16-frame fine-tuning clips)."
            )

    @property
    def draws_perms(self) -> bool:
        """Whether plans carry random frame orders (``reorder`` in a training mode)."""
        return bool(self.reorder) and self.mode != "eval"

    @property
    def num_orders(self) -> int:
        """Range of the perm fields: ``clip_len!`` when drawing perms, else 1 (all 0)."""
        return math.factorial(self.clip_len) if self.draws_perms else 1


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """One rank's items for one epoch, as parallel int64 columns.

    Attributes:
        mode: the :class:`SamplerConfig` mode that made it.
        fields: ``PLAN_FIELDS[mode]`` -> int64 array of shape ``(n_items,)``. ``pairs``:
            ``video_i, start_i, perm_i, video_j, start_j, perm_j``; ``single``:
            ``video, start, perm_a, perm_b``; ``eval``: ``video, start, clip_index``.
            ``start`` is the first frame of a ``clip_len``-frame clip; ``perm`` an
            order number of :mod:`echoclr.data.permutations`.
    """

    mode: str
    fields: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.mode not in PLAN_FIELDS:
            raise ValueError(f"EpochPlan.mode must be one of {tuple(PLAN_FIELDS)}, got {self.mode!r}")
        if tuple(self.fields) != PLAN_FIELDS[self.mode]:
            raise ValueError(
                f"EpochPlan fields for mode {self.mode!r} must be {PLAN_FIELDS[self.mode]}, "
                f"got {tuple(self.fields)}"
            )
        lengths = {name: (col.dtype, col.shape) for name, col in self.fields.items()}
        first = next(iter(self.fields.values()))
        for name, (dtype, shape) in lengths.items():
            if dtype != np.int64 or shape != first.shape or len(shape) != 1:
                raise ValueError(f"EpochPlan field {name!r} must be 1-D int64 like the others, got {lengths}")

    def __len__(self) -> int:
        return int(next(iter(self.fields.values())).shape[0])

    def __getitem__(self, key: int | slice) -> EpochPlan | dict[str, int]:
        """``plan[a:b]`` is the sub-plan of items ``a..b-1`` (views, no copy);
        ``plan[k]`` is item ``k`` as ``{field: int}``."""
        if isinstance(key, slice):
            return EpochPlan(self.mode, {name: col[key] for name, col in self.fields.items()})
        if _is_int(key):
            if not -len(self) <= key < len(self):
                raise IndexError(f"item {key} is out of range for a plan of {len(self)} items")
            return {name: int(col[key]) for name, col in self.fields.items()}
        raise TypeError(f"EpochPlan indices must be ints or slices, got {type(key).__name__}")


def _as_index(
    study_of_video: Sequence[int] | np.ndarray, n_frames: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the index arrays and return them as contiguous int64."""
    arrays = []
    for name, values in (("study_of_video", study_of_video), ("n_frames", n_frames)):
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one entry per video), got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has a value above the int64 range: {int(arr.max())}")
        arrays.append(np.ascontiguousarray(arr, dtype=np.int64))
    study, frames = arrays
    if study.shape != frames.shape:
        raise ValueError(
            f"study_of_video and n_frames must have one entry per video, got lengths "
            f"{study.shape[0]} and {frames.shape[0]}"
        )
    bad = np.flatnonzero(frames < 1)
    if bad.size:
        raise ValueError(
            f"n_frames must be >= 1 for every video, but video {int(bad[0])} has {int(frames[bad[0]])} "
            f"({bad.size} such videos); drop empty videos from the index before sampling"
        )
    return study, frames


def _check_epoch_args(epoch: int, world_size: int, rank: int = 0, start_item: int = 0) -> None:
    if not _is_int(epoch) or not 0 <= epoch < _U64_LIMIT:
        raise ValueError(f"epoch must be an int in [0, 2**64), got {epoch!r}")
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not _is_int(rank) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
    if not _is_int(start_item) or start_item < 0:
        raise ValueError(f"start_item must be an int >= 0, got {start_item!r}")


def _check_backend(backend: str) -> None:
    if backend not in ("native", "python"):
        raise ValueError(f"backend must be 'native' or 'python', got {backend!r}")


def _native_args(config: SamplerConfig) -> dict[str, object]:
    return {
        "clip_len": int(config.clip_len),
        "seed": int(config.seed),
        "reorder": bool(config.draws_perms),
        "n_clips": int(config.n_clips),
        "num_orders": config.num_orders,
        "draws": _active_draws(config),
    }


def _active_draws(config: SamplerConfig) -> tuple[int, int, int, int] | None:
    """The integer draws of a training mode's augmentation; None when nothing is drawn."""
    if config.mode == "eval" or config.augment is None:
        return None
    return config.augment.as_integers()


def plan_epoch(
    config: SamplerConfig,
    study_of_video: Sequence[int] | np.ndarray,
    n_frames: Sequence[int] | np.ndarray,
    *,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    start_item: int = 0,
    backend: Backend = "native",
) -> EpochPlan:
    """Plan one rank's epoch (see the module docstring for the exact definition).

    Args:
        config: mode, clip length, seed, reordering, eval clips.
        study_of_video: int array ``(n_videos,)``, the study of each video.
        n_frames: int array ``(n_videos,)``, frames per video, each >= 1.
        epoch: epoch number (>= 0); each epoch has its own shuffle and draws.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of ranks; studies are split between them.
        start_item: first item to return (resume): the result is ``plan[start_item:]``.
        backend: ``"native"`` (C++, GIL released) or ``"python"`` (the twin); identical results.

    Returns:
        An :class:`EpochPlan` of ``rank_item_counts(...)[rank] - start_item`` items.

    Raises:
        ValueError: bad index arrays (lengths differ, not 1-D integers, a video with < 1
            frame), rank/world_size/epoch out of range, start_item past the rank's items,
            or an unknown backend.
        ImportError: ``backend="native"`` but the extension was not built.
    """
    _check_backend(backend)
    _check_epoch_args(epoch, world_size, rank, start_item)
    study, frames = _as_index(study_of_video, n_frames)
    if backend == "native":
        from echoclr.native import native

        columns = native().plan_epoch(
            config.mode, study, frames, **_native_args(config),
            epoch=int(epoch), rank=int(rank), world_size=int(world_size), start_item=int(start_item),
        )
    else:
        columns = _twin_plan(config, study, frames, int(epoch), int(rank), int(world_size), int(start_item))
    return EpochPlan(config.mode, {name: columns[name] for name in PLAN_FIELDS[config.mode]})


def rank_item_counts(
    config: SamplerConfig,
    study_of_video: Sequence[int] | np.ndarray,
    n_frames: Sequence[int] | np.ndarray,
    *,
    epoch: int,
    world_size: int,
    backend: Backend = "native",
) -> np.ndarray:
    """Items each rank gets in this epoch (``len(plan_epoch(..., rank=r))`` for every ``r``).

    DDP rule: every rank must run the same number of steps, so a trainer runs
    ``common_steps(counts, batch_size)`` = ``min(counts) // batch_size`` steps per epoch and
    leaves each rank's remaining items (at most ``max - min + batch_size - 1``) for this
    epoch; the next epoch reshuffles studies, so different items are left out. Evaluation
    needs no such rule: every rank reads all of its items.

    Args:
        config: as for :func:`plan_epoch`.
        study_of_video: int array ``(n_videos,)``.
        n_frames: int array ``(n_videos,)``.
        epoch: epoch number (the study-to-rank assignment changes per epoch, except in eval).
        world_size: number of ranks.
        backend: ``"native"`` or ``"python"``.

    Returns:
        int64 array ``(world_size,)``; it sums to the epoch's total item count.

    Raises:
        ValueError: as for :func:`plan_epoch`.
        ImportError: ``backend="native"`` but the extension was not built.
    """
    _check_backend(backend)
    _check_epoch_args(epoch, world_size)
    study, frames = _as_index(study_of_video, n_frames)
    if backend == "native":
        from echoclr.native import native

        return native().rank_item_counts(
            config.mode, study, frames, **_native_args(config), epoch=int(epoch), world_size=int(world_size)
        )
    layout = _twin_layout(config, study, int(epoch), int(world_size))
    per_rank = np.zeros(int(world_size), dtype=np.int64)
    np.add.at(per_rank, layout.owner, layout.counts)
    return per_rank


def common_steps(counts: Sequence[int] | np.ndarray, batch_size: int) -> int:
    """Steps every rank can run in an epoch: ``min(counts) // batch_size`` (full batches only).

    Args:
        counts: per-rank item counts ``(world_size,)`` from :func:`rank_item_counts`.
        batch_size: items per step on one rank.

    Returns:
        The common number of steps (0 if some rank has fewer than ``batch_size`` items).

    Raises:
        ValueError: ``batch_size`` < 1 or ``counts`` empty.
    """
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    arr = np.asarray(counts, dtype=np.int64)
    if arr.size == 0:
        raise ValueError("counts is empty; pass rank_item_counts(...) for world_size >= 1")
    return int(arr.min()) // int(batch_size)


# ---------------------------------------------------------------------------------------------
# The Python twin. numpy does the per-item arithmetic (uint64 wraps mod 2**64), plain Python the
# sequential parts (Fisher-Yates swaps, greedy assignment). Keep in step with csrc/sampler.cpp.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)

_STUDY_ORDER, _ITEM_ORDER, _SWAP, _START_A, _START_B, _PERM_A, _PERM_B = 1, 2, 3, 4, 5, 6, 7
_SHIFT_Y, _SHIFT_X, _FLIP, _ROTATE, _ANGLE = 8, 9, 10, 11, 12


def _mix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        return z ^ (z >> np.uint64(31))


def _combine(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix64(h + _GOLDEN * (v + _ONE))


def _u64(values: object) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=np.uint64))


def stream_key(seed: int, epoch: int, stream: int, sub: int) -> int:
    """``key(stream, sub)`` of the module docstring (exposed for the twin tests)."""
    h = _u64(0)
    for value in (seed, epoch, stream, sub):
        h = _combine(h, _u64(value))
    return int(h[0])


def uniform_below(key: int, counters: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Uniform integers in ``[0, bounds)`` for each counter (rejection sampling, see the
    module docstring). Shapes: ``counters``, ``bounds`` and the result ``(n,)`` uint64."""
    counters, bounds = np.broadcast_arrays(_u64(counters), _u64(bounds))
    assert (bounds >= _ONE).all(), "bounds must be >= 1"
    with np.errstate(over="ignore"):
        threshold = (~bounds + _ONE) % bounds  # (2**64 - bound) % bound
    base = _combine(_u64(key), counters)
    out = np.empty(counters.shape, dtype=np.uint64)
    pending = np.arange(counters.size)
    attempt = 0
    while pending.size:
        x = _combine(base[pending], _u64(attempt))
        accepted = x >= threshold[pending]
        out[pending[accepted]] = x[accepted] % bounds[pending[accepted]]
        pending = pending[~accepted]
        attempt += 1
    return out


def _shuffle(values: list, key: int) -> None:
    """Fisher-Yates in place: for i = n-1..1, swap values[i] with values[uniform_below(key, i, i+1)]."""
    i = np.arange(len(values) - 1, 0, -1, dtype=np.uint64)
    j = uniform_below(key, i, i + _ONE)
    for a, b in zip(i.tolist(), j.tolist()):
        values[a], values[b] = values[b], values[a]


@dataclass(frozen=True)
class _Layout:
    videos: np.ndarray  # (n_videos,) video indices grouped by study, ascending within a study
    begin: np.ndarray  # (n_studies + 1,) study p owns videos[begin[p]:begin[p + 1]]
    counts: np.ndarray  # (n_studies,) items per study
    owner: np.ndarray  # (n_studies,) rank per study


def _twin_layout(config: SamplerConfig, study: np.ndarray, epoch: int, world_size: int) -> _Layout:
    videos = np.argsort(study, kind="stable")
    grouped = study[videos]
    is_first = np.r_[True, grouped[1:] != grouped[:-1]] if grouped.size else np.zeros(0, bool)
    starts = np.flatnonzero(is_first)
    begin = np.r_[starts, grouped.size].astype(np.int64)
    n = np.diff(begin)
    if config.mode == "pairs":
        counts = np.where(n == 1, 1, n * (n - 1) // 2)
    elif config.mode == "single":
        counts = n.copy()
    else:
        counts = n * config.n_clips

    owner = np.zeros(n.size, dtype=np.int64)
    if world_size > 1:
        order = list(range(n.size))
        if config.mode != "eval":
            _shuffle(order, stream_key(config.seed, epoch, _STUDY_ORDER, 0))
        order.sort(key=lambda p: -counts[p])  # stable: ties keep the shuffled order
        heap = [(0, r) for r in range(world_size)]  # (load, rank): least loaded, then lowest rank
        for p in order:
            load, r = heapq.heappop(heap)
            owner[p] = r
            heapq.heappush(heap, (load + int(counts[p]), r))
    return _Layout(videos.astype(np.int64), begin, counts.astype(np.int64), owner)


def _rank_videos(layout: _Layout, rank: int) -> np.ndarray:
    owned = np.flatnonzero(layout.owner == rank)
    parts = [layout.videos[layout.begin[p] : layout.begin[p + 1]] for p in owned]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _draw(
    config: SamplerConfig, stream: int, epoch: int, g: np.ndarray, bounds: np.ndarray | int
) -> np.ndarray:
    key = stream_key(config.seed, epoch, stream, 0)
    return uniform_below(key, g.astype(np.uint64), bounds).astype(np.int64)


def _draw_perm(config: SamplerConfig, stream: int, epoch: int, g: np.ndarray) -> np.ndarray:
    if not config.draws_perms:
        return np.zeros(g.size, dtype=np.int64)
    return _draw(config, stream, epoch, g, config.num_orders)


def _draw_views(config: SamplerConfig, epoch: int, g: np.ndarray, suffixes: tuple[str, str]) -> dict[str, np.ndarray]:
    """The augmentation fields of both views of items ``g`` (module docstring)."""
    out: dict[str, np.ndarray] = {}
    draws = _active_draws(config)
    counters = g.astype(np.uint64)
    for view, suffix in enumerate(suffixes):
        names = view_fields(suffix)
        if draws is None:
            out.update({name: np.zeros(g.size, dtype=np.int64) for name in names})
            continue
        pad, flip_t, rotate_t, steps = draws

        def draw(stream: int, bound: int) -> np.ndarray:
            return uniform_below(stream_key(config.seed, epoch, stream, view), counters, bound).astype(np.int64)

        rotated = draw(_ROTATE, PROBABILITY_SCALE) < rotate_t
        out[names[0]] = draw(_SHIFT_Y, 2 * pad + 1) - pad
        out[names[1]] = draw(_SHIFT_X, 2 * pad + 1) - pad
        out[names[2]] = (draw(_FLIP, PROBABILITY_SCALE) < flip_t).astype(np.int64)
        out[names[3]] = np.where(rotated, draw(_ANGLE, 2 * steps) - steps, 0)
    return out


def _check_start_item(start_item: int, n_items: int) -> None:
    if start_item > n_items:
        raise ValueError(
            f"start_item {start_item} is outside [0, {n_items}]: this rank has {n_items} items this epoch"
        )


def _twin_plan(
    config: SamplerConfig,
    study: np.ndarray,
    frames: np.ndarray,
    epoch: int,
    rank: int,
    world_size: int,
    start_item: int,
) -> dict[str, np.ndarray]:
    layout = _twin_layout(config, study, epoch, world_size)
    last = np.maximum(frames - config.clip_len, 0)  # (n_videos,) last valid start per video
    item_key = stream_key(config.seed, epoch, _ITEM_ORDER, rank)

    if config.mode == "eval":
        vids = _rank_videos(layout, rank)
        _check_start_item(start_item, vids.size * config.n_clips)
        video = np.repeat(vids, config.n_clips)[start_item:]
        k = np.tile(np.arange(config.n_clips, dtype=np.int64), vids.size)[start_item:]
        ell = last[video]
        if config.n_clips == 1:
            start = ell // 2
        else:
            d = config.n_clips - 1
            start = k * (ell // d) + (k * (ell % d)) // d  # == floor(k * ell / d) without overflow
        return {"video": video, "start": start, "clip_index": k}

    if config.mode == "single":
        vids = _rank_videos(layout, rank).tolist()
        _check_start_item(start_item, len(vids))
        _shuffle(vids, item_key)
        video = np.asarray(vids[start_item:], dtype=np.int64)
        return {
            "video": video,
            "start": _draw(config, _START_A, epoch, video, last[video] + 1),
            "perm_a": _draw_perm(config, _PERM_A, epoch, video),
            "perm_b": _draw_perm(config, _PERM_B, epoch, video),
            **_draw_views(config, epoch, video, ("a", "b")),
        }

    # pairs: canonical items (g, a, b) of this rank's studies
    offsets = np.r_[0, np.cumsum(layout.counts)].astype(np.int64)
    g_parts, a_parts, b_parts = [], [], []
    for p in np.flatnonzero(layout.owner == rank):
        vids = layout.videos[layout.begin[p] : layout.begin[p + 1]]
        if vids.size == 1:
            a_pos = b_pos = np.zeros(1, dtype=np.int64)
        else:
            a_pos, b_pos = np.triu_indices(vids.size, k=1)  # lexicographic (a, b), a < b
        g_parts.append(offsets[p] + np.arange(a_pos.size, dtype=np.int64))
        a_parts.append(vids[a_pos])
        b_parts.append(vids[b_pos])
    empty = np.zeros(0, np.int64)
    g_all, a_all, b_all = (np.concatenate(x) if x else empty for x in (g_parts, a_parts, b_parts))
    _check_start_item(start_item, g_all.size)
    order = list(range(g_all.size))
    _shuffle(order, item_key)
    pick = np.asarray(order[start_item:], dtype=np.int64)
    g, a, b = g_all[pick], a_all[pick], b_all[pick]
    swap = _draw(config, _SWAP, epoch, g, 2) == 1
    video_i = np.where(swap, b, a)
    video_j = np.where(swap, a, b)
    return {
        "video_i": video_i,
        "start_i": _draw(config, _START_A, epoch, g, last[video_i] + 1),
        "perm_i": _draw_perm(config, _PERM_A, epoch, g),
        "video_j": video_j,
        "start_j": _draw(config, _START_B, epoch, g, last[video_j] + 1),
        "perm_j": _draw_perm(config, _PERM_B, epoch, g),
        **_draw_views(config, epoch, g, ("i", "j")),
    }
