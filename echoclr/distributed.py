"""Small helpers over ``torch.distributed`` that also work in a single process.

Outside a process group (plain ``python``, CPU tests, the demo) :func:`rank` is 0,
:func:`world_size` is 1 and :func:`all_gather` returns its input, so callers never
branch on whether training is distributed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from echoclr.errors import EchoclrError

__all__ = [
    "RankFailedError",
    "all_gather",
    "all_gather_objects",
    "gather_sizes",
    "all_ranks_succeed",
    "broadcast_object",
    "is_dist",
    "rank",
    "raise_if_any_rank_failed",
    "world_size",
]


def is_dist() -> bool:
    """Whether a default process group is initialised (``torchrun`` / DDP).

    Returns:
        True inside an initialised process group, else False.
    """
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_dist() else 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of tensors whose first dimension may differ between ranks.

    Backward: every rank holds the gradient of *its own* loss with respect to all
    gathered pieces; the gradient of the sum of all ranks' losses with respect to
    this rank's input is the sum over ranks of the piece that came from this rank,
    so the padded gradients are all-reduced (SUM) and this rank's slice is returned.
    All-reduce works on every backend (gloo has no reduce-scatter).
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: list[int] | None) -> tuple[Tensor, ...]:  # type: ignore[override]
        n_ranks = dist.get_world_size()
        if sizes is None:
            sizes = gather_sizes(tensor.shape[0], tensor.device)
        assert len(sizes) == n_ranks and sizes[dist.get_rank()] == tensor.shape[0], (sizes, tensor.shape)
        max_n = max(sizes)

        padded = tensor.new_zeros((max_n, *tensor.shape[1:]))  # (max_n, ...)
        padded[: tensor.shape[0]] = tensor
        pieces = [torch.empty_like(padded) for _ in range(n_ranks)]
        dist.all_gather(pieces, padded.contiguous())

        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        return tuple(piece[:n].clone() if n < max_n else piece for piece, n in zip(pieces, sizes))

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        sizes: list[int] = ctx.sizes
        max_n = max(sizes)
        first = grads[0]
        stacked = first.new_zeros((len(sizes), max_n, *first.shape[1:]))  # (world, max_n, ...)
        for r, (g, n) in enumerate(zip(grads, sizes)):
            stacked[r, :n] = g
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[ctx.rank, : sizes[ctx.rank]].clone(), None


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``n`` (one collective and one host synchronisation: call it once, not per step).

    Args:
        n: this rank's value (e.g. its local batch size).
        device: where the collective runs (the process group's device: ``cuda`` under NCCL).

    Returns:
        One int per rank, in rank order. Not distributed: ``[n]``.
    """
    if world_size() == 1:
        return [int(n)]
    local = torch.tensor([int(n)], dtype=torch.int64, device=device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return torch.cat(gathered).tolist()


def all_gather(tensor: Tensor, sizes: list[int] | None = None) -> list[Tensor]:
    """All-gather along dim 0 across ranks, differentiably; sizes may differ per rank.

    The backward pass sums, over all ranks, the gradient that flowed into the piece
    gathered from this rank, i.e. it returns d(sum of every rank's loss)/d(tensor).
    Combined with DDP's gradient averaging this makes a loss computed from gathered
    tensors behave like the mean of the per-rank losses.

    Args:
        tensor: ``(n_local, ...)``; trailing shape and dtype must agree across ranks.
        sizes: every rank's ``n_local`` if known (:func:`gather_sizes`, cached by the caller); None gathers
            them first, an extra collective and a host synchronisation.

    Returns:
        One tensor per rank, in rank order, ``(n_r, ...)``. Not distributed: ``[tensor]``.
    """
    if world_size() == 1:
        return [tensor]
    return list(_GatherWithGrad.apply(tensor, sizes))


class RankFailedError(EchoclrError):
    """Another rank of the job raised; this rank stops too instead of waiting in the next collective."""


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (picklable objects, tensors included); identity when not distributed."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order; ``[value]`` when not distributed."""
    if world_size() == 1:
        return [value]
    boxes: list[Any] = [None] * world_size()
    dist.all_gather_object(boxes, value)
    return boxes


def raise_if_any_rank_failed(error: BaseException | None) -> None:
    """Collective: every rank passes its own exception (or None); if any rank failed, every rank raises.

    The failing rank re-raises its own exception; the others raise :class:`RankFailedError` naming the rank and
    its message. Call it before the next collective after any step that can fail on one rank only (reading a
    file, validating a folder), so no rank is left waiting in a collective the failed rank never reaches.

    Raises:
        BaseException: this rank's ``error``.
        RankFailedError: another rank failed.
    """
    if world_size() == 1:
        if error is not None:
            raise error
        return
    messages = all_gather_objects(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, message = failed[0]
        raise RankFailedError(f"rank {r} of {world_size()} failed, so this rank stops too: {message}")


@contextlib.contextmanager
def all_ranks_succeed() -> Iterator[None]:
    """Run the block on every rank; if it raises on any rank, it raises on all (see :func:`raise_if_any_rank_failed`).

    Example::

        with all_ranks_succeed():
            state = prepare_folder() if is_main else None   # may raise on rank 0 only
        state = broadcast_object(state)                      # reached by all ranks, or by none
    """
    error: BaseException | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised below on this rank, reported to the others
        error = exc
    raise_if_any_rank_failed(error)
