"""Label-titration subsets: a training ratio is sampled by study, and smaller ratios nest inside larger ones.

Given the studies' labels the draw is stratified: each class is permuted on its own and the subset takes a
prefix of each, in proportion to the class's share and never less than one study of each class. A subset with
one class cannot train a classifier (with 10 of the demo's 96 training studies an unstratified draw held no
positive study once in 8 seeds, and that fine-tuning run predicted "negative" for everything).

Shared by fine-tuning (`echoclr.train.finetune`) and the frozen-embedding probes (`echoclr.eval.probe`), so both
train on exactly the same studies for a (ratio, seed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def titration_studies(study_ids: Sequence[str], ratio: float, seed: int, *, min_studies: int = 2,
                      labels: Mapping[str, int] | None = None) -> list[str]:
    """The training studies used at ``ratio`` of the labelled training set.

    ``ceil(ratio * n)`` studies (at least ``min_studies``) are taken as a prefix of a seeded permutation, so the
    1% studies are inside the 5% ones, which are inside the 10% ones, and so on. With ``labels`` and both classes
    present, each class has its own permutation and contributes ``round(count * share)`` studies, clipped to
    ``[1, count - 1]``: every subset holds both classes, and the per-class counts grow by at most one per extra
    study, which keeps the subsets nested.

    Args:
        study_ids: the labelled training studies (any order, duplicates ignored).
        ratio: fraction in (0, 1].
        seed: seed of the permutation (the same for every ratio of one experiment).
        min_studies: the smallest subset.
        labels: 0/1 label of every study in ``study_ids``; None draws without stratifying.

    Returns:
        The chosen study ids, in permutation order (positives first when stratified).

    Raises:
        ValueError: ``ratio`` outside (0, 1], no studies, or a study without a label in ``labels``.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    studies = sorted(set(study_ids))
    if not studies:
        raise ValueError("no labelled training studies to sample from")
    # round first: 0.05 * 200 is 10.000000000000002 in floating point, which must not become 11 studies
    count = min(len(studies), max(min_studies, math.ceil(round(ratio * len(studies), 9))))
    if labels is None:
        order = np.random.default_rng(seed).permutation(len(studies))
        return [studies[i] for i in order[:count]]
    missing = [s for s in studies if s not in labels]
    if missing:
        raise ValueError(f"no label for {len(missing)} studies, e.g. {missing[0]!r}")
    positives = [s for s in studies if labels[s]]
    negatives = [s for s in studies if not labels[s]]
    if not positives or not negatives or count < 2:
        order = np.random.default_rng(seed).permutation(len(studies))
        return [studies[i] for i in order[:count]]
    n_pos = min(max(1, round(count * len(positives) / len(studies))), count - 1, len(positives))
    n_pos = max(n_pos, count - len(negatives))
    rng = np.random.default_rng(seed)
    pos_order, neg_order = rng.permutation(len(positives)), rng.permutation(len(negatives))
    return [positives[i] for i in pos_order[:n_pos]] + [negatives[i] for i in neg_order[:count - n_pos]]
