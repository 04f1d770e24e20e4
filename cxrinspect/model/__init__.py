"""Models: the DenseNet builder, the one preprocessing path, self-describing checkpoints, importers."""

from .card import CardError, ModelCard
from .checkpoint import CheckpointError, Model, load, read_card, save
from .densenet import DENSENET121, build
from .importers import import_chexnet, import_torchxrayvision
from .preprocess import Preprocessing, model_view, normalise, preprocess

__all__ = ["CardError", "CheckpointError", "DENSENET121", "Model", "ModelCard", "Preprocessing", "build",
           "import_chexnet", "import_torchxrayvision", "load", "model_view", "normalise", "preprocess",
           "read_card", "save"]
