"""The Radiograph: full-depth pixels, how to present them, and what the file says about itself.

Pixel values are *modality values* (DICOM stored values after the Modality LUT / rescale;
raster images as stored). Nothing is reduced to 8 bits here: the viewer and the model each
ask :mod:`cxrinspect.imaging.display` for the presentation they need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


LUMA = np.array([0.299, 0.587, 0.114], np.float32)
"""ITU-R BT.601 luma weights, as Pillow's "L" conversion: the one colour-to-grey rule of every reader."""


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey float32 from the first three channels (fewer channels use as many weights) of (..., C) pixels."""
    c = min(3, rgb.shape[-1])
    return rgb[..., :c].astype(np.float32) @ LUMA[:c]


class ImageReadError(Exception):
    """A file could not be read as a radiograph. The message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Window:
    """A linear VOI window (DICOM PS3.3 C.11.2.1.2), in modality values."""

    center: float
    width: float

    def __post_init__(self):
        if not (np.isfinite(self.center) and np.isfinite(self.width)) or self.width < 1:
            raise ValueError(f"invalid window center={self.center} width={self.width} (width must be >= 1)")

    @classmethod
    def from_range(cls, low: float, high: float) -> "Window":
        """The window that maps ``low`` to black and ``high`` to white exactly."""
        low, high = float(low), float(high)
        if high <= low:
            high = low + 1.0
        return cls(center=(low + high + 1.0) / 2.0, width=high - low + 1.0)

    @property
    def low(self) -> float:
        return self.center - 0.5 - (self.width - 1.0) / 2.0

    @property
    def high(self) -> float:
        return self.center - 0.5 + (self.width - 1.0) / 2.0


@dataclass(frozen=True)
class VoiLut:
    """A DICOM VOI LUT: input value ``first_mapped`` maps to ``table[0]``; values outside the table clamp."""

    first_mapped: int
    table: np.ndarray
    explanation: str = ""


@dataclass
class Radiograph:
    """One 2-D radiograph as read from disk.

    - ``pixels``: 2-D modality values, float32 or uint16, row-major.
    - ``window``: the default window (DICOM tags, or the data's range for raster images).
    - ``voi_lut``: a DICOM VOI LUT, used for the default presentation when present.
    - ``inverted``: the file asks for one inversion for display (MONOCHROME1 and/or Presentation
      LUT Shape INVERSE: one inversion, never two).
    - ``metadata``: a summary safe to print (no patient identity).
    - ``identity``: patient identity fields, shown only when the user asks for them.
    - ``warnings``: things the reader noticed (e.g. "multi-frame: first frame shown").
    """

    path: str
    pixels: np.ndarray
    window: Window
    format: str
    inverted: bool = False
    voi_lut: VoiLut | None = None
    pixel_spacing: tuple[float, float] | None = None
    metadata: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    header: object | None = None  # the pydicom Dataset without pixel data, for tag browsers

    def __post_init__(self):
        if self.pixels.ndim != 2:
            raise ValueError(f"a Radiograph holds a 2-D image, got shape {self.pixels.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # (rows, columns)

    @property
    def name(self) -> str:
        return Path(self.path).name
