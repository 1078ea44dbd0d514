"""The clip data engine: DALI augmentation graph, its pipelines, and the loaders around them.

Importing this package never imports DALI; building a pipeline without DALI raises
:class:`DaliNotAvailableError` with the install command.
"""

from echoclr.pipeline.dali import ClipPipeline, DaliNotAvailableError, dali_available, require_dali
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, AugmentConfig, GraphInputs, augment_graph
from echoclr.pipeline.loaders import (
    ClipReaderLike,
    EvalLoader,
    LoaderConfig,
    PairLoader,
    SingleLoader,
    plan_array,
)
from echoclr.pipeline.reference import AugmentParams, draw_params, reference_augment

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "AugmentConfig",
    "AugmentParams",
    "ClipPipeline",
    "ClipReaderLike",
    "DaliNotAvailableError",
    "EvalLoader",
    "GraphInputs",
    "LoaderConfig",
    "PairLoader",
    "SingleLoader",
    "augment_graph",
    "dali_available",
    "draw_params",
    "plan_array",
    "reference_augment",
    "require_dali",
]
