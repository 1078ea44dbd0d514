"""Type stub of the private compiled extension (csrc/*bindings.cpp). Use echoclr.data.sampling and echoclr.pipeline."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

abi_version: int

def plan_epoch(
    mode: str,
    study_of_video: npt.ArrayLike,
    n_frames: npt.ArrayLike,
    *,
    clip_len: int,
    seed: int,
    reorder: bool,
    n_clips: int,
    num_orders: int,
    draws: tuple[int, int, int, int] | None,
    epoch: int,
    rank: int,
    world_size: int,
    start_item: int,
) -> dict[str, npt.NDArray[np.int64]]: ...
def rank_item_counts(
    mode: str,
    study_of_video: npt.ArrayLike,
    n_frames: npt.ArrayLike,
    *,
    clip_len: int,
    seed: int,
    reorder: bool,
    n_clips: int,
    num_orders: int,
    draws: tuple[int, int, int, int] | None,
    epoch: int,
    world_size: int,
) -> npt.NDArray[np.int64]: ...
def stream_key(seed: int, epoch: int, stream: int, sub: int) -> int: ...
def uniform_below(key: int, counter: int, bound: int) -> int: ...
def augment_clips(
    clips: Sequence[npt.ArrayLike],
    orders: Sequence[npt.ArrayLike],
    shifts: Sequence[npt.ArrayLike],
    flips: Sequence[npt.ArrayLike],
    angles: Sequence[npt.ArrayLike],
    outs: Sequence[npt.NDArray[np.float32]],
    *,
    channels: int,
    min_range: float,
    mean: npt.ArrayLike | None,
    std: npt.ArrayLike | None,
    threads: int,
) -> None: ...
def warp_clip(
    clip: npt.ArrayLike, order: npt.ArrayLike, dy: int, dx: int, flip: bool, angle_deg: float
) -> npt.NDArray[np.uint8]: ...
