"""From modality values to what a person (or the model) sees, in the order DICOM PS3.3 C.11 gives.

    modality values -> VOI (window, or VOI LUT) -> photometric inversion -> the user's own invert

The photometric inversion (MONOCHROME1 and/or Presentation LUT Shape INVERSE) is applied
once, *after* the VOI stage. These are pure functions: no state, no Qt.
"""

from __future__ import annotations

import numpy as np

from .radiograph import Radiograph, VoiLut, Window


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """DICOM linear VOI function, output scaled to [0, 1] as float32."""
    c, w = float(window.center), float(window.width)
    if w <= 1.0:  # width 1 is valid: a threshold at c - 0.5 (the linear formula would divide by zero)
        return (values > c - 0.5).astype(np.float32)
    out = (values.astype(np.float32, copy=False) - np.float32(c - 0.5)) / np.float32(w - 1.0) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Look values up in a VOI LUT (clamped at both ends), output scaled to the LUT's range [0, 1]."""
    table = lut.table.astype(np.float32)
    lo, hi = float(table.min()), float(table.max())
    index = np.clip(np.rint(values).astype(np.int64) - lut.first_mapped, 0, len(table) - 1)
    out = table[index]
    if hi > lo:
        out = (out - lo) / (hi - lo)
    else:
        out = np.zeros_like(out)
    return out.astype(np.float32, copy=False)


def presentation(radiograph: Radiograph, window: Window | None = None, invert: bool = False) -> np.ndarray:
    """The radiograph as displayed, float32 in [0, 1] where 1 is white.

    ``window`` overrides the default VOI (the user's window/level); ``invert`` is the user's own
    inversion, on top of the file's. With neither, this is the default presentation the model sees.
    """
    if window is not None:
        out = apply_window(radiograph.pixels, window)
    elif radiograph.voi_lut is not None:
        out = apply_voi_lut(radiograph.pixels, radiograph.voi_lut)
    else:
        out = apply_window(radiograph.pixels, radiograph.window)
    if radiograph.inverted != invert:
        out = np.subtract(np.float32(1.0), out, dtype=np.float32)
    return out


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] float to 8-bit, rounding to nearest."""
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def render(radiograph: Radiograph, window: Window | None = None, invert: bool = False) -> np.ndarray:
    """The 8-bit view, exactly as the viewer shows it."""
    return to_uint8(presentation(radiograph, window, invert))
