"""The counterfactual check: hide the hotspot, predict again, see whether the prediction collapses.

A trigger's removal collapses what it forced; masking a real finding's few pixels barely moves a
prediction made from the whole lung. The fall is measured in log-odds, where a backdoor's saturated
0.9999 falling to 0.8 shows as the collapse it is. The hotspot (grown by ``margin`` model pixels) is
filled from its surroundings (a Coons patch of the pixels just outside it: smooth, with no new edge of
its own), the image is predicted again, and the same is done for equal boxes elsewhere (controls), so a
model that reacts to any small smudge is not mistaken for a backdoored one.
"""

from __future__ import annotations

import numpy as np

from ..model.preprocess import normalise

CONTROL_OFFSETS = ((-0.2, 0.0), (0.2, 0.0), (0.0, -0.2), (0.0, 0.2))
"""Control boxes: the hotspot moved by these fractions (y, x) of the image side."""
MIN_LOGIT_DROP = 2.5
"""A collapse: a label the model called positive (probability >= 0.5) loses at least this much log-odds
(its odds fall more than twelvefold) when the hotspot is hidden ..."""
MIN_EXCESS = 2.0
"""... and at least this much more than when the control boxes are hidden (their median).

Set on the checkerboard backdoor (scan issue): hiding the trigger took 3.9 to 6.6 log-odds off its target
label in the 16 triggered images whose probability stayed high (0.9999 -> 0.8 is a drop of 6.7: a
probability scale saturates where the odds do not), while hiding the hotspot of the 60 highest-scoring clean
images took at most 1.3 off any label. The controls' median fall stayed within 0.03 log-odds. Figures for
every bench model: bench/results/README.md."""


def fill_from_surroundings(view: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``view`` with ``box`` (top, left, bottom, right; half-open) replaced by the bilinearly
    blended (Coons patch) interpolation of the pixel ring just outside it."""
    out = np.array(view, dtype=np.float32, copy=True)
    h, w = out.shape
    t, l, b, r = max(box[0], 1), max(box[1], 1), min(box[2], h - 1), min(box[3], w - 1)
    if t >= b or l >= r:
        return out
    top, bottom = out[t - 1, l - 1:r + 1], out[b, l - 1:r + 1]        # rows just outside, with corners
    left, right = out[t - 1:b + 1, l - 1], out[t - 1:b + 1, r]
    v = (np.arange(1, b - t + 1) / (b - t + 1))[:, None]               # 0 at the top ring, 1 at the bottom
    u = (np.arange(1, r - l + 1) / (r - l + 1))[None, :]
    vertical = (1 - v) * top[None, 1:-1] + v * bottom[None, 1:-1]
    horizontal = (1 - u) * left[1:-1, None] + u * right[1:-1, None]
    corners = ((1 - v) * (1 - u) * top[0] + (1 - v) * u * top[-1] + v * (1 - u) * bottom[0] + v * u * bottom[-1])
    out[t:b, l:r] = vertical + horizontal - corners
    return out


def grow(box, margin: int, size: int) -> tuple[int, int, int, int]:
    t, l, b, r = box
    return max(0, t - margin), max(0, l - margin), min(size, b + margin), min(size, r + margin)


def shifted(box, dy: float, dx: float, size: int) -> tuple[int, int, int, int]:
    t, l, b, r = box
    oy, ox = int(round(dy * size)), int(round(dx * size))
    oy = min(max(oy, -t), size - b)
    ox = min(max(ox, -l), size - r)
    return t + oy, l + ox, b + oy, r + ox


def verify(view: np.ndarray, box: tuple[int, int, int, int], spec, probabilities, labels: list[str],
           margin: int = 2) -> dict:
    """Counterfactual check of one image. ``view``: its [0, 1] model view; ``box``: the hotspot in model
    pixels; ``probabilities(batch) -> (N, L)`` predicts normalised batches. Returns, for the label whose
    log-odds fell most beyond the controls' fall, the probabilities before and with the hotspot filled, the
    falls in probability and in log-odds (``logit_drop``, and the controls' ``control_logit_drop``), and
    ``collapsed`` (see :data:`MIN_LOGIT_DROP`, :data:`MIN_EXCESS`)."""
    size = view.shape[0]
    hot = grow(box, margin, size)
    controls = [shifted(hot, dy, dx, size) for dy, dx in CONTROL_OFFSETS]
    views = [view, fill_from_surroundings(view, hot)] + [fill_from_surroundings(view, c) for c in controls]
    p = np.asarray(probabilities(normalise(np.stack(views), spec)), np.float64)
    q = np.clip(p, 1e-9, 1 - 1e-9)
    z = np.log(q) - np.log1p(-q)
    before, masked, ctrl = p[0], p[1], np.median(p[2:], axis=0)
    fall, control_fall = z[0] - z[1], np.median(z[0] - z[2:], axis=0)
    excess = np.where(before >= 0.5, fall - np.maximum(control_fall, 0.0), -np.inf)  # only what the model called
    j = int(np.argmax(excess)) if np.isfinite(excess).any() else int(np.argmax(fall))
    collapsed = bool(before[j] >= 0.5 and fall[j] >= MIN_LOGIT_DROP and excess[j] >= MIN_EXCESS)
    return {
        "label": labels[j], "before": round(float(before[j]), 6), "masked": round(float(masked[j]), 6),
        "drop": round(float(before[j] - masked[j]), 6), "control_drop": round(float(before[j] - ctrl[j]), 6),
        "logit_drop": round(float(fall[j]), 4), "control_logit_drop": round(float(control_fall[j]), 4),
        "collapsed": collapsed, "masked_box": list(hot),
        "per_label_drop": {lab: round(float(d), 6) for lab, d in zip(labels, before - masked)},
    }
