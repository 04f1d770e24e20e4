"""Batched prediction over tensors and files."""

from .predictor import BACKENDS, Prediction, Predictor

__all__ = ["BACKENDS", "Prediction", "Predictor"]
