"""The clip data engine: DALI augmentation graph, its pipelines, and the loaders around them.

Importing this package never imports DALI; building a pipeline without DALI raises
:class:`DaliNotAvailableError` with the install command. The numpy oracle :mod:`echoclr.pipeline.reference` is for
tests and benchmarks and is not imported here.
"""

from echoclr.pipeline.dali import ClipPipeline, DaliNotAvailableError, dali_available, require_dali
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, AugmentConfig, AugmentParams, augment_graph, minmax_normalize
from echoclr.pipeline.loaders import (
    ClipReaderLike,
    EvalLoader,
    LoaderConfig,
    PairLoader,
    SingleLoader,
    pipeline_seed,
    plan_array,
)

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "AugmentConfig",
    "AugmentParams",
    "ClipPipeline",
    "ClipReaderLike",
    "DaliNotAvailableError",
    "EvalLoader",
    "LoaderConfig",
    "PairLoader",
    "SingleLoader",
    "augment_graph",
    "dali_available",
    "minmax_normalize",
    "pipeline_seed",
    "plan_array",
    "require_dali",
]
