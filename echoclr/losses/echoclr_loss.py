"""EchoCLR's objective: NT-Xent plus frame-order cross-entropy, summed."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from echoclr.losses.frame_order import FrameOrderLoss
from echoclr.losses.ntxent import NTXentLoss


class LossParts(NamedTuple):
    """A total loss and its parts, for backward and logging.

    Attributes:
        total: scalar to backpropagate (``contrastive + order``).
        contrastive: scalar NT-Xent term.
        order: scalar frame-order cross-entropy, or None without reordering.
    """

    total: Tensor
    contrastive: Tensor
    order: Tensor | None


class EchoCLRLoss(nn.Module):
    """NT-Xent over the global batch, plus frame-order cross-entropy when ``reorder``.

    With ``reorder=False`` this is the SimCLR / MI-SimCLR loss.

    Args:
        temperature: NT-Xent temperature > 0.
        reorder: add the frame-order term (EchoCLR) or not (SimCLR, MI-SimCLR).
        gather: gather NT-Xent negatives from all ranks.

    Raises:
        ValueError: ``temperature`` is not a finite number > 0.
    """

    def __init__(self, temperature: float = 0.5, reorder: bool = True, gather: bool = True) -> None:
        super().__init__()
        self.contrastive = NTXentLoss(temperature=temperature, gather=gather)
        self.order = FrameOrderLoss() if reorder else None

    def forward(
        self,
        z_i: Tensor,
        z_j: Tensor,
        order_logits: Tensor | None = None,
        order_targets: Tensor | None = None,
        study: Tensor | None = None,
    ) -> LossParts:
        """Compute the loss.

        Args:
            z_i: ``(n, D)`` projector outputs of the first views.
            z_j: ``(n, D)`` projector outputs of the second views (row k pairs with ``z_i[k]``).
            order_logits: ``(M, K!)`` order-head outputs (e.g. ``M = 2n``, both views);
                required with ``reorder``, refused without it.
            order_targets: ``(M,)`` true order numbers; same rule.
            study: ``(n,)`` study of each pair: same-study negatives leave the NT-Xent denominator (None:
                no masking, the authors' behaviour).

        Returns:
            :class:`LossParts` with scalar ``total``, ``contrastive`` and ``order``.

        Raises:
            ValueError: bad shapes or targets, or order inputs missing with ``reorder``
                / given without it (a reorder flag that never reached the model or loss).
        """
        contrastive = self.contrastive(z_i, z_j, study)
        given = (order_logits is not None, order_targets is not None)
        if self.order is None:
            if any(given):
                raise ValueError(
                    "frame-order logits/targets were passed but the loss was built with "
                    "reorder=False; build it with reorder=True or stop passing them"
                )
            return LossParts(total=contrastive, contrastive=contrastive, order=None)
        if not all(given):
            raise ValueError(
                "the loss was built with reorder=True but order_logits and/or order_targets "
                "are missing; build the model with reorder=True and pass both, or build the "
                "loss with reorder=False"
            )
        order = self.order(order_logits, order_targets)
        return LossParts(total=contrastive + order, contrastive=contrastive, order=order)
