"""Saliency maps (no Qt): fast all-label CAM and pixel-resolution attributions via captum."""

from .attribution import METHODS, Logits, gradient_saliency, saliency
from .cam import class_activation_maps

__all__ = ["METHODS", "Logits", "class_activation_maps", "gradient_saliency", "saliency"]
