"""Label-titration subsets: a training ratio is sampled by study, and smaller ratios nest inside larger ones.

Shared by fine-tuning (`echoclr.train.finetune`) and the frozen-embedding probes (`echoclr.eval.probe`), so both
train on exactly the same studies for a (ratio, seed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def titration_studies(study_ids: Sequence[str], ratio: float, seed: int, *, min_studies: int = 2) -> list[str]:
    """The training studies used at ``ratio`` of the labelled training set.

    One seeded permutation of the sorted study ids is cut at ``ceil(ratio * n)`` (at least ``min_studies``), so
    the 1% studies are inside the 5% ones, which are inside the 10% ones, and so on.

    Args:
        study_ids: the labelled training studies (any order, duplicates ignored).
        ratio: fraction in (0, 1].
        seed: seed of the permutation (the same for every ratio of one experiment).

    Returns:
        The chosen study ids, in permutation order.

    Raises:
        ValueError: ``ratio`` outside (0, 1] or no studies.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    studies = sorted(set(study_ids))
    if not studies:
        raise ValueError("no labelled training studies to sample from")
    order = np.random.default_rng(seed).permutation(len(studies))
    # round first: 0.05 * 200 is 10.000000000000002 in floating point, which must not become 11 studies
    count = min(len(studies), max(min_studies, math.ceil(round(ratio * len(studies), 9))))
    return [studies[i] for i in order[:count]]
