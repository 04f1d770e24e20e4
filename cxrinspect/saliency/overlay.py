"""Saliency over the radiograph, as the viewer shows it: a colour-mapped map blended onto the grey image,
with a colour bar. Used by `cxrinspect render --overlay` and the scan report (the GUI draws the same
normalised map with pyqtgraph)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

COLOUR_MAPS = ("inferno", "jet", "viridis", "magma", "hot")


def display_map(saliency: np.ndarray, smooth: float | tuple[float, float] = 0.0, percentile: float = 99.5) -> np.ndarray:
    """A map scaled to [0, 1] for display: optionally smoothed (sigma in pixels, or per axis), then divided
    by its ``percentile``-th value, so a few extreme pixels do not leave the rest invisible."""
    m = np.asarray(saliency, np.float32)
    if np.any(np.asarray(smooth) > 0):
        m = ndimage.gaussian_filter(m, smooth)
    top = float(np.percentile(m, percentile)) if m.size else 0.0
    if top <= 0:
        top = float(m.max())
    return np.clip(m / top, 0.0, 1.0) if top > 0 else np.zeros_like(m)


def shown_map(saliency: np.ndarray, method: str, spec) -> np.ndarray:
    """A map on a source image's grid as every view shows it (``cxrinspect render --overlay``, the desktop
    app): pixel-resolution methods smoothed over about one model-input pixel (the crop's side over the
    input size, per axis), so the spot a 3x3 trigger makes stays visible on a 2000-px film; CAM as is
    (it is smooth already). ``spec``: the model card's preprocessing."""
    sigma = 0.0 if method == "cam" else tuple(n * spec.crop_fraction / spec.input_size for n in saliency.shape)
    return display_map(saliency, smooth=sigma)


def lut(name: str = "inferno") -> np.ndarray:
    """256 x 3 uint8 colour table of a matplotlib colour map."""
    import matplotlib

    if name not in matplotlib.colormaps:
        raise ValueError(f"unknown colour map {name!r}; try one of {', '.join(COLOUR_MAPS)}")
    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def blend(grey: np.ndarray, unit_map: np.ndarray, opacity: float = 0.5, colour_map: str = "inferno") -> np.ndarray:
    """uint8 grey (H, W) + a [0, 1] map (H, W) -> RGB uint8: the colour shows in proportion to the map's
    value times ``opacity``, so cold regions keep the radiograph visible."""
    if grey.shape != unit_map.shape:
        raise ValueError(f"image {grey.shape} and map {unit_map.shape} differ in shape")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    colours = lut(colour_map)[np.rint(unit_map * 255).astype(np.uint8)].astype(np.float32)
    alpha = (opacity * unit_map)[..., None]
    rgb = (1 - alpha) * grey[..., None].astype(np.float32) + alpha * colours
    return np.rint(rgb).clip(0, 255).astype(np.uint8)


def with_colour_bar(rgb: np.ndarray, title: str, colour_map: str = "inferno") -> np.ndarray:
    """The image with a vertical colour bar (low at the bottom, high at the top) and a title on the right."""
    h = rgb.shape[0]
    font = _font(max(10, h // 40))
    bar_w, pad = max(12, h // 40), max(6, h // 100)
    label_w = int(max(font.getlength(t) for t in ("high", "low", *title.split("\n")))) + 2 * pad
    panel = Image.new("RGB", (bar_w + label_w + 2 * pad, h), (0, 0, 0))
    bar_h = int(h * 0.6)
    top = (h - bar_h) // 2
    ramp = lut(colour_map)[np.linspace(255, 0, bar_h).round().astype(int)]
    panel.paste(Image.fromarray(np.repeat(ramp[:, None], bar_w, axis=1)), (pad, top))
    draw = ImageDraw.Draw(panel)
    draw.text((2 * pad + bar_w, top), "high", fill=(255, 255, 255), font=font)
    draw.text((2 * pad + bar_w, top + bar_h - font.size), "low", fill=(255, 255, 255), font=font)
    draw.multiline_text((pad, pad), title, fill=(255, 255, 255), font=font)
    return np.concatenate([rgb, np.asarray(panel)], axis=1)


def draw_box(rgb: np.ndarray, box: tuple[int, int, int, int], colour=(0, 255, 255), width: int = 2) -> np.ndarray:
    """A copy with the (top, left, bottom, right) box outlined (grown so a 3-pixel box stays visible)."""
    img = Image.fromarray(rgb)
    t, l, b, r = box
    g = width + 1
    ImageDraw.Draw(img).rectangle((l - g, t - g, r - 1 + g, b - 1 + g), outline=colour, width=width)
    return np.asarray(img)


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()
