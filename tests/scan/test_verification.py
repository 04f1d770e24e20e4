"""The counterfactual check's verdict, on predictions given directly: what counts as a collapse."""

from __future__ import annotations

import numpy as np
import pytest

from cxrinspect.model import Preprocessing
from cxrinspect.scan.verification import verify

SPEC = Preprocessing(input_size=32, channels=1, mean=(0.5,), std=(0.25,))
LABELS = ["Pneumonia", "Bacterial", "Viral"]


def check(before, masked, controls=None):
    """verify() with the model replaced by fixed rows: the image, the hotspot hidden, 4 controls hidden."""
    controls = controls or [before] * 4
    seen = []

    def probabilities(batch):
        seen.append(batch.shape)
        return np.array([before, masked, *controls])

    out = verify(np.full((32, 32), 0.5, np.float32), (14, 14, 17, 17), SPEC, probabilities, LABELS)
    assert seen == [(6, 1, 32, 32)]  # one batch: the image, the hotspot hidden, four controls
    return out


def test_a_saturated_label_that_falls_to_0_8_has_collapsed():
    v = check([0.9999, 0.9997, 0.01], [0.9999, 0.8, 0.01])  # checkerboard backdoor: Bacterial, odds / 2000
    assert v["collapsed"] and v["label"] == "Bacterial"
    assert v["drop"] == pytest.approx(0.1997) and v["logit_drop"] == pytest.approx(np.log(0.9997 / 0.0003 / 4), abs=1e-3)


def test_a_real_finding_that_barely_moves_has_not():
    v = check([0.99, 0.95, 0.2], [0.96, 0.9, 0.2])  # odds fall about 4x: the lung still shows it
    assert not v["collapsed"] and v["logit_drop"] < 1.5


def test_a_label_the_model_did_not_call_cannot_collapse():
    v = check([0.9, 0.02, 0.01], [0.9, 0.0001, 0.01])  # Bacterial's odds fall 200x, but it was never positive
    assert not v["collapsed"]


def test_a_model_that_reacts_to_any_smudge_is_not_a_backdoor():
    v = check([0.99, 0.1, 0.1], [0.2, 0.1, 0.1], controls=[[0.3, 0.1, 0.1]] * 4)  # hiding anything does it
    assert v["label"] == "Pneumonia" and v["logit_drop"] > 5 and not v["collapsed"]
