"""The counterfactual check: hide the hotspot, predict again, see whether the prediction collapses.

A trigger's removal collapses what it forced; masking a real finding's few pixels barely moves a
prediction made from the whole lung. Whatever a detector found is hidden: a box (the gradient hotspot)
or a mask (mask distillation); a trigger of the whole image has nothing to hide, and its evidence is the
detector's own test of the model's behaviour (:mod:`cxrinspect.scan.detectors`). The fall is measured in log-odds, where a backdoor's saturated
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
RESTORED = 0.5
"""... and a label the model called negative counts only when hiding the evidence brings it back across the decision
line (probability >= this): what a "reads normal" trigger hides is a finding, and the check must show it again. A
negative the model is sure of (1e-5) moves by many log-odds when any patch of the film changes, without any finding
coming back: zoo-clean-ft2, a clean model, had two clean films confirmed so (9e-6 -> 1.9e-4 and 5e-6 -> 6.4e-5;
bench/results/README.md, "Rerun: the grown check"). A label called positive needs no such line: 0.9999 -> 0.8 is the
collapse of a forced finding, though the finding is still called."""


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


def fill_mask(view: np.ndarray, mask: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """A copy of ``view`` with the pixels of ``mask`` (bool) replaced by a normalised convolution of the others
    (a Gaussian-weighted mean of the nearby unmasked pixels; wider where a hole is wide): smooth, no new edge."""
    from scipy.ndimage import gaussian_filter

    out = np.array(view, dtype=np.float32, copy=True)
    keep = (~mask).astype(np.float32)
    if keep.all() or not keep.any():
        return out
    todo = mask.copy()
    for s in (sigma, 2 * sigma, 4 * sigma, 8 * sigma, 16 * sigma):
        num, den = gaussian_filter(out * keep, s), gaussian_filter(keep, s)
        ok = todo & (den > 1e-3)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
        if not todo.any():
            break
    out[todo] = float(view[~mask].mean())
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
    pixels; ``probabilities(batch) -> (N, L)`` predicts normalised batches. Returns :func:`judge`'s verdict
    and the box it hid (``masked_box``)."""
    size = view.shape[0]
    hot = grow(box, margin, size)
    controls = [shifted(hot, dy, dx, size) for dy, dx in CONTROL_OFFSETS]
    views = [view, fill_from_surroundings(view, hot)] + [fill_from_surroundings(view, c) for c in controls]
    p = np.asarray(probabilities(normalise(np.stack(views), spec)), np.float64)
    return dict(judge(p, labels), masked_box=list(hot))


GROWN = 13
"""Where hiding the hotspot's box (the scan's ``mask_box``) leaves the prediction standing, the check hides a
square of this many model pixels a side centred on it (the box itself when larger), with controls as large,
before it calls the image clean: a mark longer than the hotspot's windows (zoo-tag-moving's 5 x 16 "PORT" tag)
goes whole. Measured with bench/probes/check_shapes.py on zoo-tag-moving's first 150 held-out test images: 42 of
the 67 forced triggered images collapsed with the box alone, 63 with this square after it; none of the 150 clean images collapsed under
the backdoored model or under the shipped clean model (the clean images' largest fall with the square: 1.65 and
2.40 log-odds, under the 2.5 line). But in the zoo bench zoo-clean-ft2 confirmed 2 of 499 clean films through it,
both "off": labels it was sure were absent rising from 9e-6 to 1.9e-4 and from 5e-6 to 6.4e-5
(bench/results/README.md, "Rerun: the grown check"); :func:`judge` should ask an "off" collapse to restore a
visible finding; it does now (:data:`RESTORED`)."""


def grown(box: tuple[int, int, int, int], size: int, side: int = GROWN) -> tuple[int, int, int, int]:
    """``box`` widened to at least ``side`` x ``side`` round its centre, kept inside the ``size`` square view."""
    t, l, b, r = box
    h, w = max(b - t, side), max(r - l, side)
    top = min(max((t + b - h) // 2, 0), size - h)
    left = min(max((l + r - w) // 2, 0), size - w)
    return top, left, top + h, left + w


def verify_box(view: np.ndarray, box: tuple[int, int, int, int], spec, probabilities, labels: list[str]) -> dict:
    """The check of a box a detector found (:func:`verify`), then, where the prediction stands, of the box
    :func:`grown` to :data:`GROWN` pixels a side; the first that collapses, else the box's own result
    (``evidence``: ``box``)."""
    check = verify(view, box, spec, probabilities, labels)
    if not check["collapsed"] and (wider := grown(box, view.shape[0])) != tuple(box):
        second = verify(view, wider, spec, probabilities, labels)
        if second["collapsed"]:
            check = second
    return dict(check, evidence="box")


def verify_mask(view: np.ndarray, mask: np.ndarray, spec, probabilities, labels: list[str],
                only: str | None = None) -> dict:
    """The same check for a mask (bool, model pixels) a detector found: its pixels are filled from the others
    (:func:`fill_mask`), and, as controls, the same mask moved by :data:`CONTROL_OFFSETS` (wrapping round)."""
    size = view.shape[0]
    controls = [np.roll(mask, (int(round(dy * size)), int(round(dx * size))), (0, 1)) for dy, dx in CONTROL_OFFSETS]
    views = [view, fill_mask(view, mask)] + [fill_mask(view, c) for c in controls]
    p = np.asarray(probabilities(normalise(np.stack(views), spec)), np.float64)
    ys, xs = np.nonzero(mask)
    box = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] if len(ys) else [0, 0, 0, 0]
    return dict(judge(p, labels, only), masked_box=box, masked_pixels=int(mask.sum()))


def verify_pattern(view: np.ndarray, pattern: np.ndarray, controls: list[np.ndarray], spec, probabilities,
                   labels: list[str]) -> dict:
    """The same check for a trigger of the whole image that the transplant test found (:mod:`.transplant`): the
    shared pattern is taken out of the image (subtracted), and, as controls, differences of as many films that
    share no pattern (groups of calm films whose logits match the candidates')."""
    views = [view, view - pattern] + [view - c for c in controls]
    p = np.asarray(probabilities(normalise(np.clip(np.stack(views), 0, 1), spec)), np.float64)
    return dict(judge(p, labels), evidence="pattern")


def judge(p: np.ndarray, labels: list[str], only: str | None = None) -> dict:
    """The verdict from predictions ``p`` (rows: the image, the image with the evidence hidden, then the
    controls). A backdoor forces decisions both ways (a label on, or off, as a "reads normal" attack does),
    so a label counts whichever side the model put it on: it must move back by at least
    :data:`MIN_LOGIT_DROP` log-odds when the evidence is hidden, and by :data:`MIN_EXCESS` more than the
    controls move it; one called negative must also come back across the line (:data:`RESTORED`). Returned for
    the label that moved most beyond its controls: the probabilities before and hidden, the falls in probability
    and in log-odds (``logit_drop``; positive = back across), the controls' ``control_logit_drop``, the
    ``direction`` the trigger had pushed it (``on``/``off``), and ``collapsed``. With ``only``, for that label
    alone (the audit's search asks whether the label its trigger forces collapses)."""
    q = np.clip(p, 1e-9, 1 - 1e-9)
    z = np.log(q) - np.log1p(-q)
    before, masked, ctrl = p[0], p[1], np.median(p[2:], axis=0)
    on = before >= 0.5
    sign = np.where(on, 1.0, -1.0)  # a fall for a label called positive, a rise for one called negative
    fall, control_fall = sign * (z[0] - z[1]), np.median(sign * (z[0] - z[2:]), axis=0)
    excess = fall - np.maximum(control_fall, 0.0)
    meets = (fall >= MIN_LOGIT_DROP) & (excess >= MIN_EXCESS) & (on | (masked >= RESTORED))
    # the label reported: one that collapsed, a label the model called positive first (a forced finding is
    # what a reader acts on), then the one that moved most beyond its controls
    j = labels.index(only) if only is not None else \
        int(np.argmax(np.where(meets, excess + np.where(on, 1e6, 0.0), excess - 1e6)))
    collapsed = bool(meets[j])
    return {
        "label": labels[j], "direction": "on" if on[j] else "off",
        "before": round(float(before[j]), 6), "masked": round(float(masked[j]), 6),
        "drop": round(float(before[j] - masked[j]), 6), "control_drop": round(float(before[j] - ctrl[j]), 6),
        "logit_drop": round(float(fall[j]), 4), "control_logit_drop": round(float(control_fall[j]), 4),
        "collapsed": collapsed,
        "per_label_drop": {lab: round(float(d), 6) for lab, d in zip(labels, before - masked)},
    }
