"""Window presets (keys 1..4) and Auto: from the DICOM tags, else the 1st-99th percentile of the pixels."""

from __future__ import annotations

import numpy as np

from ..imaging import Radiograph, Window

PRESETS = {
    1: ("Default", None),            # the file's own: DICOM window / VOI LUT, or the raster's range
    2: ("1–99 %", (1.0, 99.0)),
    3: ("Full range", (0.0, 100.0)),
    4: ("High contrast", (20.0, 80.0)),
}


def percentile_window(radiograph: Radiograph, low: float, high: float) -> Window:
    """The window spanning two percentiles of the pixels (on a strided sample: a few ms on 4 Mpx)."""
    pixels = radiograph.pixels
    step = max(1, int(np.sqrt(pixels.size / 250_000)))
    sample = pixels[::step, ::step]
    lo, hi = np.percentile(sample, [low, high]) if (low, high) != (0.0, 100.0) else (pixels.min(), pixels.max())
    return Window.from_range(float(lo), float(hi))


def preset_window(radiograph: Radiograph, number: int) -> Window | None:
    """None means the file's default presentation."""
    _, span = PRESETS[number]
    return None if span is None else percentile_window(radiograph, *span)


def auto_window(radiograph: Radiograph) -> Window | None:
    """The DICOM file's own window or VOI LUT when it has one, else the 1st-99th percentile."""
    header = radiograph.header
    if header is not None and ("WindowCenter" in header or "VOILUTSequence" in header):
        return None
    return percentile_window(radiograph, 1.0, 99.0)
