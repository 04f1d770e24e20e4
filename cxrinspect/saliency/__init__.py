"""Saliency maps (no Qt): fast all-label CAM and pixel-resolution attributions via captum."""

from .attribution import METHODS, Logits, candidate_gradients, gradient_saliency, logits_and_gradients, saliency
from .cam import class_activation_maps
from .explain import explain, label_indices

__all__ = ["METHODS", "Logits", "candidate_gradients", "class_activation_maps", "explain", "label_indices", "gradient_saliency", "logits_and_gradients", "saliency"]
