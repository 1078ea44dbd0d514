"""NT-Xent (SimCLR's normalised temperature-scaled cross-entropy) over the global batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from echoclr import distributed


def check_temperature(temperature: float) -> float:
    """Validate an NT-Xent temperature.

    Args:
        temperature: softmax temperature, a finite number > 0.

    Returns:
        ``temperature`` as a float.

    Raises:
        ValueError: not a finite number > 0.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return float(temperature)


class NTXentLoss(nn.Module):
    """NT-Xent loss of two views, with negatives from every rank.

    For ``2N`` L2-normalised embeddings (``N`` pairs in the global batch), row ``a``
    with positive ``p(a)`` has loss
    ``-log( exp(s_ap / t) / sum_{k != a} exp(s_ak / t) )`` where ``s`` is cosine
    similarity; the loss is the mean over all ``2N`` rows (both directions of every pair).

    Distributed (``gather=True`` under torchrun): each rank gathers all embeddings
    with gradients and computes the rows of its local pairs against all ``2N``
    columns, scaled so that the mean of the per-rank losses equals the single-process
    loss on the global batch, also when ranks hold different numbers of pairs. With
    DDP's gradient averaging, the gradients then equal the single-process gradients.

    Same-study negatives: given the study of every pair (``study``), entries of the same
    study other than the positive are left out of each row's denominator, on every rank
    (the studies are gathered with the embeddings). The paper's negatives are videos of
    *other* patients; the authors' code did not mask, so two pairs of one study in a batch
    were pushed apart. Without ``study`` the loss is plain NT-Xent.

    Computed in float32 with autocast disabled (the logits feed an exp).

    Args:
        temperature: softmax temperature ``t`` > 0 (paper: 0.5; the authors' scripts: 0.05).
        gather: gather negatives from all ranks (True) or use only the local batch.

    Raises:
        ValueError: ``temperature`` is not a finite number > 0.
    """

    def __init__(self, temperature: float = 0.5, gather: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather = bool(gather)
        # every rank's batch size, gathered once per local size (a collective and a host sync): the trainers run
        # equal full batches on every rank, so a rank's own size determines all of them
        self._sizes: dict[int, list[int]] = {}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"

    def forward(self, z_i: Tensor, z_j: Tensor, study: Tensor | None = None) -> Tensor:
        """Loss of the local pairs ``(z_i[k], z_j[k])``.

        Args:
            z_i: ``(n, D)`` embeddings of the first views (not necessarily normalised).
            z_j: ``(n, D)`` embeddings of the second views; row ``k`` pairs with ``z_i[k]``.
            study: ``(n,)`` integer study of pair ``k`` (the same numbering on every rank), or None for no
                same-study masking.

        Returns:
            Scalar loss (float32). In a single process (or ``gather=False``), the mean
            over the ``2n`` rows; under ``gather=True`` on ``W`` ranks with ``2N``
            global rows, ``W / (2N)`` times the sum over the local rows.

        Raises:
            ValueError: shapes are not equal ``(n, D)`` with ``n >= 1``; ``study`` is not an integer ``(n,)``.
        """
        if z_i.ndim != 2 or z_i.shape != z_j.shape or z_i.shape[0] < 1:
            raise ValueError(
                "NT-Xent expects two embedding batches of equal shape (n, D) with n >= 1, "
                f"got z_i {tuple(z_i.shape)} and z_j {tuple(z_j.shape)}"
            )
        if study is not None and (study.shape != (z_i.shape[0],) or study.is_floating_point()):
            raise ValueError(
                f"study must be an integer tensor of shape ({z_i.shape[0]},) (one study per pair), got "
                f"{study.dtype} {tuple(study.shape)}"
            )
        with torch.autocast(device_type=z_i.device.type, enabled=False):
            return self._loss(z_i.float(), z_j.float(), study)

    def _loss(self, z_i: Tensor, z_j: Tensor, study: Tensor | None = None) -> Tensor:
        n = z_i.shape[0]
        z_i = F.normalize(z_i, dim=1)
        z_j = F.normalize(z_j, dim=1)

        n_ranks = distributed.world_size() if self.gather else 1
        if n_ranks > 1:
            pairs = torch.stack((z_i, z_j), dim=1)  # (n, 2, D): one collective for both views
            if n not in self._sizes:
                self._sizes[n] = distributed.gather_sizes(n, pairs.device)
            pieces = distributed.all_gather(pairs, self._sizes[n])  # W x (n_r, 2, D)
            offset = sum(p.shape[0] for p in pieces[: distributed.rank()])
            global_pairs = torch.cat(pieces, dim=0)  # (N, 2, D)
        else:
            offset = 0
            global_pairs = torch.stack((z_i, z_j), dim=1)  # (N = n, 2, D)
        n_global = global_pairs.shape[0]
        columns = torch.cat((global_pairs[:, 0], global_pairs[:, 1]), dim=0)  # (2N, D)
        rows = torch.cat((z_i, z_j), dim=0)  # (2n, D)

        logits = rows @ columns.T / self.temperature  # (2n, 2N)
        local = torch.arange(n, device=rows.device)
        self_col = torch.cat((offset + local, n_global + offset + local))  # (2n,)
        positive_col = torch.cat((n_global + offset + local, offset + local))  # (2n,)
        logits = logits.scatter(1, self_col[:, None], float("-inf"))
        if study is not None:
            logits = logits.masked_fill(self._same_study(study.to(rows.device), n_ranks, positive_col), float("-inf"))
        per_row = F.cross_entropy(logits, positive_col, reduction="none")  # (2n,)
        return per_row.sum() * (n_ranks / (2 * n_global))

    @staticmethod
    def _same_study(study: Tensor, n_ranks: int, positive_col: Tensor) -> Tensor:
        """``(2n, 2N)`` bool: column of the row's study other than its positive (self is masked anyway)."""
        with torch.no_grad():
            global_study = torch.cat(distributed.all_gather(study)) if n_ranks > 1 else study  # (N,)
            col_study = torch.cat((global_study, global_study))  # (2N,): views i, then views j
            row_study = torch.cat((study, study))  # (2n,)
            same = row_study[:, None] == col_study[None, :]  # (2n, 2N)
            return same.scatter(1, positive_col[:, None], False)
