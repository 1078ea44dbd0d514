"""The clip data engine: DALI augmentation graph, its pipelines, and the loaders around them; the GPU path
without DALI (device clip cache, CUDA kernel, device pair loader).

Importing this package never imports DALI or cupy; building a pipeline without DALI raises
:class:`DaliNotAvailableError`, using the GPU path without cupy :class:`CupyNotAvailableError`, each with the
install command. The numpy oracle :mod:`echoclr.pipeline.reference` is for tests and
benchmarks and is not imported here.
"""

from echoclr.pipeline.cuda_augment import CudaAugment, CupyNotAvailableError, cupy_available, require_cupy
from echoclr.pipeline.cuda_loader import DevicePairLoader
from echoclr.pipeline.dali import ClipPipeline, DaliNotAvailableError, dali_available, require_dali
from echoclr.pipeline.device_cache import DeviceClipCache, use_device_cache
from echoclr.pipeline.graph import (
    KINETICS_MEAN,
    KINETICS_STD,
    AugmentConfig,
    AugmentParams,
    GraphInputs,
    augment_graph,
    minmax_normalize,
)
from echoclr.pipeline.loaders import (
    ClipReaderLike,
    EvalLoader,
    LoaderConfig,
    PairLoader,
    SingleLoader,
    plan_array,
)

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "AugmentConfig",
    "AugmentParams",
    "ClipPipeline",
    "ClipReaderLike",
    "CudaAugment",
    "CupyNotAvailableError",
    "DeviceClipCache",
    "DevicePairLoader",
    "DaliNotAvailableError",
    "EvalLoader",
    "GraphInputs",
    "LoaderConfig",
    "PairLoader",
    "SingleLoader",
    "augment_graph",
    "cupy_available",
    "dali_available",
    "plan_array",
    "minmax_normalize",
    "require_cupy",
    "require_dali",
    "use_device_cache",
]
