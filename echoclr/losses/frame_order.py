"""Cross-entropy of the frame-reordering pretext task over the K! frame orders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrameOrderLoss(nn.Module):
    """Cross-entropy between predicted and true frame orders (mean over clips).

    Order numbers follow :mod:`echoclr.data.permutations` (lexicographic rank of the
    permutation among the ``K!`` orders of a ``K``-frame clip).
    """

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy, computed in float32.

        Args:
            logits: ``(M, K!)`` order-head outputs.
            targets: ``(M,)`` integer order numbers in ``[0, K!)``.

        Returns:
            Scalar loss.

        Raises:
            ValueError: shapes disagree, targets are not integers, or (CPU targets) a target
                is outside ``[0, K!)``. On a GPU the range check is a device-side assertion
                (``torch._assert_async``): no host synchronisation per step; a bad target
                fails the next synchronising call with the same message.
        """
        if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
            raise ValueError(
                "frame-order loss expects logits (M, K!) and targets (M,), got "
                f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
            )
        integer = not (targets.dtype.is_floating_point or targets.dtype.is_complex)
        if not integer or targets.dtype == torch.bool:
            raise ValueError(
                f"frame-order targets must be integer order numbers, got dtype {targets.dtype}"
            )
        n_classes = logits.shape[1]
        out_of_range = (targets < 0) | (targets >= n_classes)
        if targets.device.type != "cpu":
            torch._assert_async(
                ~out_of_range.any(),
                f"frame-order targets must lie in [0, {n_classes}) for a head with {n_classes} classes",
            )
        elif bool(out_of_range.any()):
            bad = targets[out_of_range][:5].tolist()
            raise ValueError(
                f"frame-order targets must lie in [0, {n_classes}) for a head with {n_classes} "
                f"classes, got {bad}; the clip length used to number the orders must match "
                "the model's clip length"
            )
        return F.cross_entropy(logits.float(), targets.long())
