"""Batched prediction over tensors and files."""

from .predictor import BACKENDS, Prediction, Predictor, default_device

__all__ = ["BACKENDS", "Prediction", "Predictor", "default_device"]
