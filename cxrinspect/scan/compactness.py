"""How concentrated a saliency map is: the scanner's evidence that a model looks at a tiny trigger.

A healthy chest classifier spreads its attention over the lungs; a backdoored one, shown its
trigger, collapses onto a few pixels (Nwadike et al. 2020). Every metric here takes a non-negative
2-D map (absolute gradients, CAM, attributions' magnitude) at pixel resolution and is 1 (or near)
for a single hot pixel and small for attention spread over the image:

- ``window_share[k]``: share of the map's mass inside the best k x k window, for each k (and where);
- ``top1_share``: share of the mass in the top 1% of pixels;
- ``area50``: smallest fraction of the image holding 50% of the mass (small = compact);
- ``entropy``: Shannon entropy of the normalised map over log(pixels): 0 for one pixel, 1 uniform;
- the largest connected component above ``component_level`` x max: its area, box, centre and mass.

The score, :data:`SCORE`, is the best-3x3-window mass share: on a BadNets DenseNet-121 with a 3x3
trigger it separated triggered from clean images perfectly (detection AUROC 1.00, its window on the
trigger every time), where last-layer CAM measures reached only 0.66 (see the scanner issue).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

WINDOWS = (3, 5, 9)
SCORE = "window_share_3"
"""The documented score: share of the saliency mass in the best 3x3 window."""


@dataclass
class Compactness:
    """Metrics of one map; boxes are (top, left, bottom, right), half-open, in the map's pixels."""

    window_share: dict[int, float] = field(default_factory=dict)
    window_box: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    top1_share: float = 0.0
    area50: float = 1.0
    entropy: float = 1.0
    component_area: int = 0
    component_share: float = 0.0
    component_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    component_centre: tuple[float, float] = (0.0, 0.0)

    @property
    def score(self) -> float:
        return self.window_share.get(3, 0.0)

    def to_dict(self) -> dict:
        """Flat, JSON-ready: ``window_share_3``, ``window_box_3``, ..., ``score``."""
        d = asdict(self)
        shares, boxes = d.pop("window_share"), d.pop("window_box")
        flat = {f"window_share_{k}": v for k, v in shares.items()}
        flat.update({f"window_box_{k}": list(v) for k, v in boxes.items()})
        d["component_box"], d["component_centre"] = list(self.component_box), list(self.component_centre)
        return {"score": self.score, **flat, **d}


def summed_area(saliency: np.ndarray) -> np.ndarray:
    """The (H + 1, W + 1) summed-area table (float64) of a 2-D map: any window's mass in four lookups."""
    h, w = saliency.shape
    table = np.zeros((h + 1, w + 1), np.float64)
    np.cumsum(saliency, axis=0, dtype=np.float64, out=table[1:, 1:])
    np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
    return table


def best_window(saliency: np.ndarray, k: int, table: np.ndarray | None = None) -> tuple[float, tuple[int, int, int, int]]:
    """Largest mass of any k x k window (clipped to the map) and its box, by a summed-area table (``table``:
    :func:`summed_area` of the map, when already made)."""
    h, w = saliency.shape
    kh, kw = min(k, h), min(k, w)
    if table is None:
        table = summed_area(saliency)
    sums = table[kh:, kw:] - table[:-kh, kw:] - table[kh:, :-kw] + table[:-kh, :-kw]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return float(sums[top, left]), (int(top), int(left), int(top) + kh, int(left) + kw)


def compactness(saliency: np.ndarray, windows: tuple[int, ...] = WINDOWS, component_level: float = 0.5) -> Compactness:
    """All metrics of a saliency map (any non-negative 2-D array; negative values are an error)."""
    m = np.asarray(saliency, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a saliency map is a non-empty 2-D array, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("saliency map holds NaN or infinite values")
    if m.min() < 0:
        raise ValueError("saliency map has negative values: pass its magnitude (e.g. np.abs)")
    total = m.sum()
    out = Compactness()
    if total <= 0:  # an all-zero map says nothing: least compact by every measure
        out.window_share = {k: 0.0 for k in windows}
        out.window_box = {k: (0, 0, min(k, m.shape[0]), min(k, m.shape[1])) for k in windows}
        return out
    table = summed_area(m)
    for k in windows:
        mass, box = best_window(m, k, table)
        out.window_share[k], out.window_box[k] = mass / total, box
    flat = np.sort(m.ravel())[::-1]
    cum = np.cumsum(flat) / total
    n = flat.size
    out.top1_share = float(cum[max(1, int(np.ceil(0.01 * n))) - 1])
    out.area50 = float((np.searchsorted(cum, 0.5 - 1e-12) + 1) / n)
    p = flat[flat > 0] / total
    out.entropy = float(-(p * np.log(p)).sum() / np.log(n)) if n > 1 else 0.0
    labels, count = ndimage.label(m >= component_level * m.max())
    if count:
        masses = np.bincount(labels.ravel(), weights=m.ravel(), minlength=count + 1)[1:]
        best = int(np.argmax(masses)) + 1
        rows, cols = np.nonzero(labels == best)
        out.component_area = int(rows.size)
        out.component_share = float(masses[best - 1] / total)
        out.component_box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        out.component_centre = (float(rows.mean()), float(cols.mean()))
    return out
