"""Contrast consistency: does the image's prediction survive a loss of contrast? For triggers of the whole image
(a sinusoidal signal, a blended pattern, a warp), which leave no place to hide and no compact saliency map.
TeCo (Liu et al., CVPR 2023) reads the same behaviour from how unevenly a prediction survives many corruption
types; on this model its spread statistic did not carry over, lowering the contrast alone came nearest.

A whole-image trigger is a faint pattern the network has learned to react to: lowering the film's contrast
scales it down with everything else, below what fires the backdoor, and the label it forced falls. A clean film's
findings are its anatomy and its opacities; a normal film's labels even rise as its contrast falls (a flatter
film reads as hazier). But a pneumonia film's positive labels fall too, if less: on zoo-sig's 10% folder (499
held-out test images) clean films called Pneumonia and Bacterial lost a median 1.5 log-odds, films called
nothing gained 4.2, and the triggered films forced to Pneumonia and Bacterial lost 2.4. So it ranks the SIG
images it forced at AUROC 0.74 in that folder, not the 0.95 that an earlier probe on 150 mostly normal films
promised (bench/results/README.md, "Contrast consistency"). In ``auto`` it adds weight where another detector
agrees: a blended electrode's forced images went from 0.978 to 0.998 in a recombined scan.

Adapted to sigmoid outputs: the score is, over the labels the model calls positive on the image (at the card's
threshold; its top label when none is), the largest log-odds the label loses, averaged over the contrast factors
:data:`CONTRASTS`. Labels called negative are left out: a clean film's negative labels rise with the haze too,
so a lost "off" decision says nothing (a trigger that forces labels off is not measured by this detector). Cost
per image: one forward per factor. It never places a trigger (evidence "global") and never flags an image: it
ranks (:func:`cxrinspect.scan.run.combine`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CONTRASTS = (0.65, 0.35)
"""Factors by which the image's deviation from its own mean is multiplied (1 = unaltered)."""


def lowered(views: np.ndarray, factor: float) -> np.ndarray:
    """[0, 1] model views (N, H, W) with their contrast lowered towards each view's own mean by ``factor``."""
    mean = views.mean(axis=(1, 2), keepdims=True)
    return (mean + (views - mean) * factor).astype(np.float32)


def contrast_scores(forward: Callable[[np.ndarray], np.ndarray], views: np.ndarray, logits: np.ndarray,
                    thresholds: np.ndarray, factors: tuple[float, ...] = CONTRASTS) -> np.ndarray:
    """Score per image (N,), in log-odds, high = its prediction falls with the contrast: ``forward`` maps [0, 1]
    views (N, H, W) to logits (N, L); ``logits`` are the network's on ``views`` as they are; ``thresholds`` the
    card's per label (probabilities)."""
    logits = np.asarray(logits, np.float64)
    t = np.asarray(thresholds, np.float64)
    positive = logits >= np.log(t) - np.log1p(-t)
    none = ~positive.any(1)
    positive[none, logits[none].argmax(1)] = True
    lost = np.mean([logits - np.asarray(forward(lowered(views, f)), np.float64) for f in factors], axis=0)
    return np.where(positive, lost, -np.inf).max(1)
