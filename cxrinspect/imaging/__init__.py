"""Reading radiographs (DICOM, raster, ITK) and presenting them. No Qt here."""

from .discovery import Discovery, discover, natural_key
from .display import presentation, render, to_uint8
from .formats import load
from .radiograph import ImageReadError, Radiograph, VoiLut, Window

__all__ = ["Discovery", "ImageReadError", "Radiograph", "VoiLut", "Window", "discover", "load", "natural_key",
           "presentation", "render", "to_uint8"]
