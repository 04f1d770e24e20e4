"""Input-transform consistency: does the image's prediction survive a change that keeps a film's findings and
breaks a trigger? Two such changes, two detectors, one score. For triggers of the whole image (a sinusoidal
signal, a blended pattern, a warp), which leave no place to hide and no compact saliency map; a patch at a
fixed place answers too.

``contrast``: the film's contrast lowered towards its own mean (factors :data:`CONTRASTS`, one forward each). A
whole-image trigger is a faint pattern the network has learned to react to: lowering the contrast scales it
down with everything else, below what fires the backdoor, and the label it forced falls. TeCo (Liu et al., CVPR
2023) reads the same behaviour from how unevenly a prediction survives many corruption types; on these models
its spread statistic did not carry over, lowering the contrast alone came nearest. But a pneumonia film's
positive labels fall with the contrast too, if less: on zoo-sig's 10% folder (499 held-out test images) clean
films called Pneumonia and Bacterial lost a median 1.5 log-odds, films called nothing gained 4.2, and the
triggered films forced to Pneumonia and Bacterial lost 2.4 (AUROC 0.74 for the forced ones).

``mirror``: the film mirrored left-right (one forward). A transformation test (Li et al. 2021, "Backdoor attack
in the physical world": a flip or a shrink moves a trigger from where the network learned it). The models here
are trained without flips, so a mirrored trigger is a pattern the network never learned: a patch moves to the
other side, a sinusoid changes its phase, a warp field turns into another one, and the forced label falls. A
mirrored film's findings are still findings (an opacity is an opacity on either side), so its labels mostly
stand: on 150 held-out films spread over zoo-sig's test split, clean films lost a median 0.5 log-odds, forced
ones 4.1 (AUROC 0.90; WaNet 0.99, a blended electrode patch 0.97: ``bench/probes/transform_consistency.py``).
A model trained with random flips would have learned its trigger both ways round and would not answer it.

Adapted to sigmoid outputs: the score is, over the labels the model calls positive on the image (at the card's
threshold; its top label when none is), the largest log-odds the label loses, averaged over the transform's
variants. Labels called negative are left out: a clean film's negative labels rise with the haze of a flatter
film too, so a lost "off" decision says nothing (a trigger that forces labels off is not measured here). Neither
detector places a trigger (evidence "global") or flags an image: they rank (:func:`cxrinspect.scan.run.combine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

CONTRASTS = (0.65, 0.35)
"""Factors by which the image's deviation from its own mean is multiplied (1 = unaltered)."""

Forward = Callable[[np.ndarray], np.ndarray]


def lowered(views: np.ndarray, factor: float) -> np.ndarray:
    """[0, 1] model views (N, H, W) with their contrast lowered towards each view's own mean by ``factor``."""
    mean = views.mean(axis=(1, 2), keepdims=True)
    return (mean + (views - mean) * factor).astype(np.float32)


def mirrored(views: np.ndarray) -> np.ndarray:
    """[0, 1] model views (N, H, W) mirrored left-right."""
    return np.ascontiguousarray(views[:, :, ::-1])


def lost(forward: Forward, views: np.ndarray, logits: np.ndarray, thresholds: np.ndarray,
         transforms: Sequence[Callable[[np.ndarray], np.ndarray]]) -> np.ndarray:
    """Score per image (N,), in log-odds, high = its prediction falls under the transforms: ``forward`` maps
    [0, 1] views (N, H, W) to logits (N, L); ``logits`` are the network's on ``views`` as they are;
    ``thresholds`` the card's per label (probabilities); each transform maps views to views."""
    logits = np.asarray(logits, np.float64)
    t = np.asarray(thresholds, np.float64)
    positive = logits >= np.log(t) - np.log1p(-t)
    none = ~positive.any(1)
    positive[none, logits[none].argmax(1)] = True
    drop = np.mean([logits - np.asarray(forward(fn(views)), np.float64) for fn in transforms], axis=0)
    return np.where(positive, drop, -np.inf).max(1)


def contrast_scores(forward: Forward, views: np.ndarray, logits: np.ndarray, thresholds: np.ndarray,
                    factors: tuple[float, ...] = CONTRASTS) -> np.ndarray:
    """:func:`lost` as the contrast is lowered by each of ``factors``."""
    return lost(forward, views, logits, thresholds, [partial(lowered, factor=f) for f in factors])


def mirror_scores(forward: Forward, views: np.ndarray, logits: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """:func:`lost` as the film is mirrored left-right."""
    return lost(forward, views, logits, thresholds, [mirrored])
