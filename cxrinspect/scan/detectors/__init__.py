"""Trigger detectors: each turns the model's behaviour on an image into a score (high = more likely a
triggered input) and, where it can, evidence of where the trigger is: a box, a mask, or "global" (a trigger
of the whole image, with nothing to hide).

| name | what it measures | evidence | runs on | cost per image (2-core CPU, DenseNet-121, 224 px) |
| --- | --- | --- | --- | --- |
| ``gradient`` | compactness of the input-gradient map (:mod:`..compactness`) | box | every image | 1 forward + 1 backward |
| ``psc`` | scaled-parameter consistency, IBD-PSC (:mod:`.psc`) | global | every image | 3 forwards |
| ``contrast`` | contrast consistency (:mod:`.contrast`) | global | every image | 2 forwards |
| ``distill`` | mask distillation, Cognitive Distillation (:mod:`.distill`) | mask | candidates | 40 forwards + backwards |

``auto`` runs ``gradient``, ``psc`` and ``contrast`` on every image, ranks by their robust z-scores over the
folder combined (Stouffer: their sum over the square root of their number; :func:`..run.combine`), and distils
masks for the candidates whose hotspot the counterfactual check did not confirm. ``contrast`` joined it because,
recombined with the recorded scores of four patch rows of the zoo, it kept or raised every one (a blended
electrode's forced images from 0.978 to 0.998 AUROC), and it lifted the two whole-image rows scanned with it (SIG
from 0.429 to 0.665, WaNet from 0.763 to 0.913), still short of what an auditor needs
(bench/results/README.md, "Contrast consistency"). Measured costs and detection figures: bench/results/README.md.
Other saliency maps (``cam``, ``integrated-gradients``, ...) can stand in for the gradient map (their
compactness, at their own cost).

The scan's default stays ``gradient``: on the shipped BadNets model (32 clean, 12 triggered test images)
psc ranked at AUROC 0.84 with clean images reaching 1.0, and distill (40 steps) at 0.76, against 1.00 for
the gradient map (runs/exp_detect.py, session note of the detection issue); both need tuning first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...saliency import METHODS as SALIENCY_METHODS


@dataclass(frozen=True)
class Detector:
    name: str
    what: str
    evidence: str  # box | mask | global
    runs_on: str  # every image | candidates
    cost: str


DETECTORS: dict[str, Detector] = {
    "gradient": Detector("gradient", "compactness of the input-gradient saliency map", "box", "every image",
                         "1 forward + 1 backward"),
    "psc": Detector("psc", "scaled-parameter consistency (IBD-PSC, Hou et al. 2024)", "global", "every image",
                    "3 forwards (+ about 8 over a 32-image sample to calibrate)"),
    "contrast": Detector("contrast", "contrast consistency: log-odds a positive label loses as the contrast falls",
                         "global", "every image", "2 forwards"),
    "distill": Detector("distill", "mask distillation (Cognitive Distillation, Huang et al. 2023)", "mask",
                        "candidates", "40 forwards + backwards"),
}

AUTO = "auto"
METHODS = (AUTO, *DETECTORS, *(m for m in SALIENCY_METHODS if m != "gradient"))
"""``--method`` choices: the combined default, each detector alone, and the compactness of another saliency map."""


def detectors_of(method: str) -> tuple[str, ...]:
    """The detectors a scan method runs on every image (``distill`` alone runs on every image too)."""
    if method == AUTO:
        return ("gradient", "psc", "contrast")
    if method in DETECTORS:
        return (method,)
    if method in SALIENCY_METHODS:
        return ("gradient",)  # the compactness detector, on that saliency map
    raise ValueError(f"unknown scan method {method!r}; choose one of {', '.join(METHODS)}")


def saliency_of(method: str) -> str | None:
    """The saliency map a scan method measures, or None when it uses none."""
    if method in (AUTO, "gradient"):
        return "gradient"
    return method if method in SALIENCY_METHODS else None
