"""Small helpers over ``torch.distributed`` that also work in a single process.

Outside a process group (plain ``python``, CPU tests, the demo) :func:`rank` is 0,
:func:`world_size` is 1 and :func:`all_gather` returns its input, so callers never
branch on whether training is distributed.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather", "gather_sizes", "is_dist", "rank", "world_size"]


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
