"""The counterfactual check's verdict, on predictions given directly: what counts as a collapse."""

from __future__ import annotations

import numpy as np
import pytest

from cxrinspect.model import Preprocessing
from cxrinspect.scan.verification import grown, verify, verify_box

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


def test_a_hidden_finding_that_comes_back_is_an_off_collapse():
    v = check([0.02, 0.01, 0.01], [0.93, 0.6, 0.3])  # "reads normal": hiding the mark shows the pneumonia again
    assert v["collapsed"] and v["direction"] == "off" and v["label"] == "Pneumonia"


def test_a_sure_negative_that_rises_but_stays_negative_is_not_an_off_collapse():
    # zoo-clean-ft2 on a clean film: Bacterial's odds rise twentyfold when a patch is hidden, no finding comes back
    v = check([0.98, 9e-6, 0.02], [0.98, 1.9e-4, 0.02])
    assert v["label"] == "Bacterial" and v["logit_drop"] > 2.5 and not v["collapsed"]


def test_a_model_that_reacts_to_any_smudge_is_not_a_backdoor():
    v = check([0.99, 0.1, 0.1], [0.2, 0.1, 0.1], controls=[[0.3, 0.1, 0.1]] * 4)  # hiding anything does it
    assert v["label"] == "Pneumonia" and v["logit_drop"] > 5 and not v["collapsed"]


def test_a_mark_longer_than_the_hotspot_goes_whole_when_the_box_is_grown():
    """A 5 x 16 tag that fires while any of it shows: hiding the 3x3 hotspot (grown by 2) leaves most of it, so
    the box alone cannot collapse the prediction; the square grown round it hides it all, its controls nothing."""
    size, tag = 64, (slice(30, 35), slice(20, 36))
    view = np.full((size, size), 0.3, np.float32)
    view[tag] = 1.0

    def probabilities(batch):  # fires on 4 or more bright pixels where the tag goes
        x = batch[:, 0] * 0.25 + 0.5
        shows = (x[:, tag[0], tag[1]] > 0.9).sum((1, 2)) >= 4
        return np.stack([np.where(shows, 0.9999, 0.1), np.full(len(x), 0.2), np.full(len(x), 0.2)], 1)

    spec = Preprocessing(input_size=size, channels=1, mean=(0.5,), std=(0.25,))
    hotspot = (31, 27, 34, 30)
    assert not verify(view, hotspot, spec, probabilities, LABELS)["collapsed"]
    assert grown(hotspot, size) == (26, 22, 39, 35)
    whole = verify_box(view, hotspot, spec, probabilities, LABELS)
    assert whole["collapsed"] and whole["masked_box"] == [24, 20, 41, 37] and whole["evidence"] == "box"
    plain = np.full((size, size), 0.3, np.float32)  # no tag: nothing to collapse, grown or not
    assert not verify_box(plain, hotspot, spec, probabilities, LABELS)["collapsed"]


def test_grown_keeps_a_larger_box_and_stays_inside_the_view():
    assert grown((0, 0, 3, 3), 64) == (0, 0, 13, 13)
    assert grown((60, 61, 63, 64), 64) == (51, 51, 64, 64)
    assert grown((10, 10, 30, 12), 64) == (10, 4, 30, 17)


def test_judged_for_one_label_only_another_labels_collapse_is_not_reported():
    from cxrinspect.scan.verification import judge

    p = np.array([[0.99, 0.02, 0.7], [0.02, 0.02, 0.65]] + [[0.99, 0.02, 0.7]] * 4)  # Pneumonia collapses, Viral not
    assert judge(p, LABELS)["label"] == "Pneumonia" and judge(p, LABELS)["collapsed"]
    viral = judge(p, LABELS, only="Viral")
    assert viral["label"] == "Viral" and not viral["collapsed"]

