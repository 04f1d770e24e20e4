"""Trigger detectors: each turns the model's behaviour on an image into a score (high = more likely a
triggered input) and, where it can, evidence of where the trigger is: a box, a mask, or "global" (a trigger
of the whole image, with nothing to hide).

| name | what it measures | evidence | runs on | cost per image (2-core CPU, DenseNet-121, 224 px) |
| --- | --- | --- | --- | --- |
| ``gradient`` | compactness of the input-gradient map (:mod:`..compactness`) | box | every image | 1 forward + 1 backward |
| ``psc`` | scaled-parameter consistency, IBD-PSC (:mod:`.psc`) | global | every image | 3 forwards |
| ``contrast`` | contrast consistency (:mod:`.consistency`) | global | every image | 2 forwards |
| ``mirror`` | mirror consistency (:mod:`.consistency`) | global | every image | 1 forward |
| ``distill`` | mask distillation, Cognitive Distillation (:mod:`.distill`) | mask | candidates | 40 forwards + backwards |

``auto`` runs ``gradient``, ``psc``, ``contrast`` and ``mirror`` on every image, ranks by their robust z-scores
over the folder combined (Stouffer: their sum over the square root of their number; :func:`..run.combine`), and
distils masks for the candidates whose hotspot the counterfactual check did not confirm. Each detector has its
kind of trigger: the gradient map a patch, psc a moving patch and a "reads normal" square, contrast and mirror
the whole-image ones (mirror also a patch at a fixed place). Measured before the check on 150 held-out films
spread over each zoo model's test split, every one clean and triggered (``bench/probes/combine_mirror.py``),
adding ``mirror`` to the three before it raised the forced images' AUROC for SIG from 0.666 to 0.880, WaNet
0.857 to 0.948 and a blended electrode 0.913 to 0.965, and cost the moving checkerboard 0.995 to 0.979, the
moving tag 0.989 to 0.985 and the "reads normal" square 0.999 to 0.990 (bench/results/README.md, "Mirror
consistency"). ``contrast`` joined before it for the same reason, on smaller gains.
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
    "mirror": Detector("mirror", "mirror consistency: log-odds a positive label loses when the film is mirrored",
                       "global", "every image", "1 forward"),
    "distill": Detector("distill", "mask distillation (Cognitive Distillation, Huang et al. 2023)", "mask",
                        "candidates", "40 forwards + backwards"),
}

GLOBAL = tuple(name for name, d in DETECTORS.items() if d.evidence == "global")
"""The detectors that score the whole image and place nothing (a number per image)."""

AUTO = "auto"
METHODS = (AUTO, *DETECTORS, *(m for m in SALIENCY_METHODS if m != "gradient"))
"""``--method`` choices: the combined default, each detector alone, and the compactness of another saliency map."""


def detectors_of(method: str) -> tuple[str, ...]:
    """The detectors a scan method runs on every image (``distill`` alone runs on every image too)."""
    if method == AUTO:
        return ("gradient", "psc", "contrast", "mirror")
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
