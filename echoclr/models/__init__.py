"""The r3d_18 encoder, the pretraining and classification models, weight loading, and export for torchvision."""

from echoclr.models.encoder import FEATURE_DIM, Encoder, StateDictMismatchError, load_encoder_state
from echoclr.models.export import ExportExistsError, ExportResult, export_encoder, load_encoder
from echoclr.models.heads import EMBED_DIM, PROJECTOR_HIDDEN, Classifier, PretrainModel
from echoclr.models.kinetics import (
    KINETICS400_URL,
    KINETICS_MEAN,
    KINETICS_STD,
    kinetics_init,
    kinetics_standardize,
)

__all__ = [
    "EMBED_DIM",
    "FEATURE_DIM",
    "KINETICS400_URL",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "PROJECTOR_HIDDEN",
    "Classifier",
    "Encoder",
    "ExportExistsError",
    "ExportResult",
    "PretrainModel",
    "StateDictMismatchError",
    "export_encoder",
    "kinetics_init",
    "kinetics_standardize",
    "load_encoder",
    "load_encoder_state",
]
