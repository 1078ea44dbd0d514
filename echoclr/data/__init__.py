"""Data planning: which clips each rank reads per epoch, and frame-order numbering."""

from echoclr.data.permutations import (
    MAX_REORDER_CLIP_LEN,
    all_permutations,
    index_from_permutation,
    num_orders,
    permutation_from_index,
)
from echoclr.data.sampling import (
    PLAN_FIELDS,
    EpochPlan,
    SamplerConfig,
    common_steps,
    plan_epoch,
    rank_item_counts,
)
from echoclr.data.subsets import titration_studies

__all__ = [
    "MAX_REORDER_CLIP_LEN",
    "PLAN_FIELDS",
    "EpochPlan",
    "SamplerConfig",
    "all_permutations",
    "common_steps",
    "index_from_permutation",
    "num_orders",
    "permutation_from_index",
    "plan_epoch",
    "rank_item_counts",
    "titration_studies",
]
