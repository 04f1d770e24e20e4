"""Models: the DenseNet builder, the one preprocessing path, self-describing checkpoints, importers.

Names are imported on first use, so reading a card or preparing an input does not import torch
(the onnxruntime inference path runs without it).
"""

from importlib import import_module

# torch-free, imported now (this also keeps the function `preprocess` from being shadowed by its module)
from .card import CardError, CheckpointError, ModelCard, read_card
from .preprocess import Preprocessing, model_view, normalise, prepare, preprocess, stamp

_WHERE = {
    "Model": "checkpoint", "load": "checkpoint", "save": "checkpoint",
    "DENSENET121": "densenet", "build": "densenet",
    "import_chexnet": "importers", "import_torchxrayvision": "importers",
}

__all__ = sorted([*_WHERE, "CardError", "CheckpointError", "ModelCard", "read_card", "Preprocessing", "model_view",
                  "normalise", "prepare", "preprocess", "stamp"])


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
