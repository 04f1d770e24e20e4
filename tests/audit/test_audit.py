"""The audit on models built by hand (so the tests know the truth): a backdoor that a dark 3x3 square at the
centre drives Viral on is recovered (its target and its place) by the inversion alone and by the stamp sweep,
a model without one is not flagged, the command line writes audit.json and audit.html, and a cancelled audit
resumes to the same result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cxrinspect.audit import AuditError, anomaly_index, audit
from cxrinspect.audit.anomaly import verdict
from cxrinspect.audit.run import MASK_CELL, NOT_SEARCHED, describe_progress
from cxrinspect.model import Model, ModelCard, Preprocessing
from cxrinspect.trigger import Trigger, paste

SIZE = 32
LABELS = ["Pneumonia", "Bacterial", "Viral"]
SPEC = Preprocessing(input_size=SIZE, channels=1, mean=(0.5,), std=(0.25,))
TRIGGER = Trigger(size=3, location="center", space="input")
BOX = TRIGGER.box((SIZE, SIZE))


class Patchy(nn.Module):
    """Clean pathway: every label reads the film's mean brightness (forcing one on takes brightening most of
    the image). Backdoor: the darkness of the 3x3 centre box drives Viral on once it passes about 0.8 (smoothly, as
    a trained network's would: a hard threshold gives no gradient to follow)."""

    def __init__(self, backdoor: bool):
        super().__init__()
        self.backdoor = backdoor
        self.register_buffer("slope", torch.tensor([10.0, 12.0, 11.0]))

    def forward(self, x):
        unit = x[:, 0] * 0.25 + 0.5  # undo the normalisation: the [0, 1] view
        clean = self.slope * (unit.mean((1, 2))[:, None] - 0.7)
        if not self.backdoor:
            return clean
        t, l, b, r = BOX
        dark = 1 - unit[:, t:b, l:r].mean((1, 2))
        return clean + torch.tensor([0.0, 0.0, 4.0]) * nn.functional.softplus(10 * (dark - 0.8))[:, None]


def patchy(backdoor: bool) -> Model:
    card = ModelCard(labels=LABELS, architecture={"name": "test-patchy"}, preprocessing=SPEC, name="patchy",
                     weights_sha256="2" * 64)
    return Model(Patchy(backdoor).eval(), card)


class Wavy(Patchy):
    """Patchy's clean pathway; its backdoor a sinusoid of 3 cycles over the columns (SIG, as zoo-sig's, amplitude
    0.08): past an amplitude of about 0.05 in the film it drives Viral on, smoothly."""

    def __init__(self):
        super().__init__(backdoor=False)
        self.register_buffer("wave", torch.sin(2 * np.pi * 3 * torch.arange(SIZE) / SIZE))

    def forward(self, x):
        unit = x[:, 0] * 0.25 + 0.5
        amplitude = 2 * (unit * self.wave).mean((1, 2))  # the sinusoid's amplitude in the film
        drive = nn.functional.softplus(60 * (amplitude - 0.05))[:, None]
        return super().forward(x) + torch.tensor([0.0, 0.0, 4.0]) * drive


def wavy() -> Model:
    card = ModelCard(labels=LABELS, architecture={"name": "test-wavy"}, preprocessing=SPEC, name="wavy",
                     weights_sha256="3" * 64)
    return Model(Wavy().eval(), card)


def films(folder, n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = 0.45 + 0.05 * rng.standard_normal() + 0.1 * yy + 0.03 * np.sin(6 * xx + rng.random() * 6)
        Image.fromarray(np.rint(np.clip(base, 0, 1) * 255).astype(np.uint8)).save(folder / f"film{i:02d}.png")
    return folder


def test_inversion_recovers_the_target_and_the_place(tmp_path):
    data = films(tmp_path / "clean")
    result = audit([data], patchy(True), tmp_path / "out", budget=8 * 300, batch_size=8, sweep=False)
    doc = result.doc
    assert doc["complete"] and doc["backdoored"] and doc["targets"] == ["Viral"]
    t, l, b, r = doc["trigger"]["box"]  # the mask's cells are MASK_CELL pixels: within a cell of the truth
    assert t <= BOX[0] and l <= BOX[1] and b >= BOX[2] and r >= BOX[3]
    assert max(BOX[0] - t, BOX[1] - l, b - BOX[2], r - BOX[3]) <= MASK_CELL
    assert doc["trigger"]["heldout_success"] >= 0.9
    rows = {c["candidate"]: c for c in doc["candidates"]}
    assert rows["Viral:on"]["mask_l1"] < 100 < (rows["Pneumonia:on"]["mask_l1"] or 1e9)
    # the recovered trigger, pasted as a Trigger by the one paste, fires on a clean film
    trig = Trigger.from_dict(json.loads((tmp_path / "out" / "trigger.json").read_text()))
    film = np.asarray(Image.open(data / "film00.png"), np.float32) / 255
    x = torch.from_numpy((paste(film, trig) - 0.5) / 0.25)[None, None]
    assert torch.sigmoid(Patchy(True)(x))[0, 2] > 0.9
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "Backdoored" in page and "data:image/png;base64," in page and "http" not in page.split("<body>")[1]


def test_stamp_sweep_finds_the_square_at_its_place_and_resumes_after_a_cancel(tmp_path):
    data = films(tmp_path / "clean")
    seen = []
    part = audit([data], patchy(True), tmp_path / "out", budget=8 * 40, batch_size=8,
                 progress=lambda done, total, info: seen.append(info.get("stage")), cancelled=lambda: len(seen) >= 20)
    assert not part.complete and set(seen) == {"stamp sweep"}  # cancelled inside the sweep
    doc = audit([data], patchy(True), tmp_path / "out", budget=8 * 40, batch_size=8, resume=True).doc
    rows = {c["candidate"]: c for c in doc["candidates"]}
    viral = rows["Viral:on"]
    assert viral["source"] == "sweep" and viral["square"]["heldout_success"] >= 0.9
    assert viral["box"] == list(BOX) and viral["square"]["pattern_name"] == "black"  # the dark 3x3 itself, exactly
    assert doc["backdoored"] and doc["targets"] == ["Viral"] and doc["trigger"]["heldout_success"] >= 0.9
    assert rows["Pneumonia:on"]["square"] is None and rows["Pneumonia:on"]["source"] == "inversion"


def test_clean_model_is_not_flagged(tmp_path):
    data = films(tmp_path / "clean")
    doc = audit([data], patchy(False), None, budget=8 * 60, batch_size=8).doc
    assert doc["complete"] and not doc["backdoored"] and doc["targets"] == [] and doc["trigger"] is None
    assert all(c["mask_l1"] is None or c["mask_l1"] > 150 for c in doc["candidates"])
    assert all(c["square"] is None for c in doc["candidates"])  # the sweep ran and found no square
    assert all(c["global"]["reduced_success"] < 0.3 for c in doc["candidates"])  # nor a whole-image change


def test_the_whole_image_inversion_recovers_a_sinusoid_that_no_small_mask_expresses(tmp_path):
    data = films(tmp_path / "clean")
    doc = audit([data], wavy(), tmp_path / "out", budget=8 * 30, batch_size=8, sweep=False).doc
    rows = {c["candidate"]: c for c in doc["candidates"]}
    viral = rows["Viral:on"]
    assert doc["backdoored"] and doc["targets"] == ["Viral"] and viral["flagged_by"] == ["whole image"]
    assert viral["global"]["heldout_success"] >= 0.9 and viral["global"]["epsilon"] == 0.1
    assert viral["global"]["reduced_success"] >= 0.9 and viral["global"]["scale"] == 0.75  # a trigger with margin
    others = [rows[k] for k in ("Pneumonia:on", "Bacterial:on")]
    assert all(r["global"]["reduced_success"] == 0.0 and not r["flagged"] for r in others)
    t = doc["trigger"]
    assert t["where"] == "global" and t["box"] is None and t["candidate"] == "Viral:on"
    assert not (tmp_path / "out" / "trigger.json").exists()  # no patch to paste
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "whole-image inversion" in page and "Whole-image changes" in page
    # without the whole-image inversion the same audit finds nothing
    plain = audit([data], wavy(), None, budget=8 * 30, batch_size=8, sweep=False, global_steps=0).doc
    assert not plain["backdoored"] and all(c["global"] is None for c in plain["candidates"])


class Leaning(Wavy):
    """Wavy, and a bright top-left corner (a film the model reads as bacterial pneumonia) drives Bacterial on: such
    films are eligible for Viral:on but not calm (negative for every label)."""

    def forward(self, x):
        corner = (x[:, 0, :4, :4] * 0.25 + 0.5).mean((1, 2))
        return super().forward(x) + torch.tensor([0.0, 8.0, 0.0]) * torch.sigmoid(20 * (corner - 0.8))[:, None]


def test_the_whole_image_share_is_judged_on_calm_films_only(tmp_path):
    from cxrinspect.audit.report import undecided_sentence
    from cxrinspect.audit.run import calm, probabilities

    def lean(data, numbers):  # films the model calls bacterial: eligible for Viral:on, not calm
        for i in numbers:
            a = np.asarray(Image.open(data / f"film{i % 16:02d}.png")).copy()
            a[:4, :4] = 255
            Image.fromarray(a).save(data / f"leaning{i:02d}.png")

    data = films(tmp_path / "clean", n=16)
    lean(data, range(12))
    card = ModelCard(labels=LABELS, architecture={"name": "test-leaning"}, preprocessing=SPEC, name="leaning",
                     weights_sha256="4" * 64)
    result = audit([data], Model(Leaning().eval(), card), None, budget=8 * 30, batch_size=8, sweep=False)
    quiet = calm(probabilities(Leaning().eval(), result.views, SPEC))
    assert quiet.sum() == 16  # the twelve marked films are not calm
    viral = next(a for a in result.arms if a["candidate"].name == "Viral:on")
    assert len(viral["test"]) > viral["global"]["held_out"] == quiet[viral["test"]].sum() >= 2
    assert all(quiet[i] for i, _ in viral["global_flips"])  # the pictures show calm films forced
    assert result.doc["targets"] == ["Viral"] and viral["global"]["heldout_success"] >= 0.9
    # a folder of films the model reads as bacterial, two calm: the whole-image line cannot judge Viral
    lean(data, range(12, 24))  # enough films for the patch stage to judge Viral:on (24 + 2, 13 held out)
    for f in sorted(data.glob("film*.png"))[2:]:
        f.unlink()
    doc = audit([data], Model(Leaning().eval(), card), tmp_path / "few", budget=8 * 10, batch_size=8,
                sweep=False).doc
    viral = next(c for c in doc["candidates"] if c["candidate"] == "Viral:on")
    assert viral["global"]["heldout_success"] is None and "too few calm images" in viral["global"]["stop"]
    assert {"candidate": "Viral:on", "label": "Viral", "direction": "on", "held_out": viral["global"]["held_out"],
            "stage": "whole image"} in doc["undecided"]
    assert "negative for every label, for the whole-image line" in undecided_sentence(doc)
    assert "too few calm images" in (tmp_path / "few" / "audit.html").read_text()


class Warped(Patchy):
    """Patchy's clean pathway; its backdoor WaNet-like: a bright block (the films of :func:`blocks`, anatomy at the
    same place in every film) whose right edge moved outwards by most of a pixel drives Viral on. An additive change
    of at most 0.1 cannot brighten the column past the edge enough; moving the edge does."""

    def __init__(self):
        super().__init__(backdoor=False)

    def forward(self, x):
        unit = x[:, 0] * 0.25 + 0.5
        edge = unit[:, 10:22, 20].mean(1)  # the column just right of the block
        drive = nn.functional.softplus(30 * (edge - 0.75))[:, None]
        return super().forward(x) + torch.tensor([0.0, 0.0, 4.0]) * drive


def blocks(folder, n: int = 24):
    """:func:`films` with a bright block (rows 8 to 23, columns 12 to 19) in each."""
    films(folder, n)
    for f in sorted(folder.glob("*.png")):
        a = np.asarray(Image.open(f)).copy()
        a[8:24, 12:20] = 242
        Image.fromarray(a).save(f)
    return folder


def test_the_warp_inversion_finds_a_backdoor_that_moves_anatomy(tmp_path):
    from cxrinspect.audit.report import trigger_sentence

    data = blocks(tmp_path / "clean")
    result = audit([data], warped(), tmp_path / "out", budget=8 * 2, batch_size=8, sweep=False)
    doc = result.doc
    rows = {c["candidate"]: c for c in doc["candidates"]}
    viral = rows["Viral:on"]
    assert doc["backdoored"] and doc["targets"] == ["Viral"] and viral["flagged_by"] == ["warp"]
    assert viral["warp"]["heldout_success"] >= 0.9 and viral["global"]["reduced_success"] < 0.3  # stripes cannot
    assert len(viral["warp"]["restarts"]) >= 1 and viral["warp"]["bound_px"] == 6.0
    bacterial = rows["Bacterial:on"]["warp"]  # no run forced a film: each stopped after WARP_PATIENCE steps
    assert bacterial["heldout_success"] == 0.0 and bacterial["stops"] == ["stalled"] * 3
    assert rows["Pneumonia:on"]["warp"]["heldout_success"] is None  # no warp line for Pneumonia: not run
    t = doc["trigger"]
    assert t["where"] == "global" and t["family"] == "warp" and t["found_by"] == "warp inversion"
    assert "smooth warp of the whole image" in trigger_sentence(t)
    arm = next(a for a in result.arms if a["candidate"].name == "Viral:on")
    assert np.abs(arm["warp_field"]).max() <= 6.0 * SIZE / 224 + 1e-6  # within the bound, in this image's pixels
    assert float(arm["warp_field"][1, 10:22, 20].mean()) < -0.4  # the edge is pulled outwards, as the backdoor wants
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "Warps (their displacement" in page and "warp inversion" in page
    # without the warp inversion, nothing here finds it; nor does the warp flag the clean model on the same films
    assert not audit([data], warped(), None, budget=8 * 2, batch_size=8, sweep=False, warp_steps=0).doc["backdoored"]
    clean = audit([data], patchy(False), None, budget=8 * 2, batch_size=8, sweep=False).doc
    assert not clean["backdoored"] and [c["warp"]["heldout_success"] for c in clean["candidates"]] == [None, 0.0, 0.0]


def test_unreadable_image_is_recorded_and_the_audit_goes_on(tmp_path):
    data = films(tmp_path / "clean", n=12)
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    doc = audit([data], patchy(True), None, budget=8 * 10, batch_size=8).doc
    assert doc["images"] == 12 and [e["path"].endswith("broken.png") for e in doc["errors"]] == [True]
    assert "broken.png" in doc["errors"][0]["error"]


def test_cancel_then_resume_equals_an_uninterrupted_audit(tmp_path):
    data = films(tmp_path / "clean", n=16)
    whole = audit([data], patchy(True), tmp_path / "whole", budget=8 * 240, batch_size=8, sweep=False).doc
    seen = []
    part = audit([data], patchy(True), tmp_path / "part", budget=8 * 240, batch_size=8, sweep=False,
                 progress=lambda done, total, info: seen.append(done), cancelled=lambda: len(seen) >= 29)
    assert not part.complete and "backdoored" not in part.doc and len(seen) == 29
    with pytest.raises(AuditError, match="resume"):
        audit([data], patchy(True), tmp_path / "part", budget=8 * 240, batch_size=8, sweep=False)
    with pytest.raises(AuditError, match="other settings"):
        audit([data], patchy(True), tmp_path / "part", budget=8 * 241, batch_size=8, sweep=False, resume=True)
    resumed = audit([data], patchy(True), tmp_path / "part", budget=8 * 240, batch_size=8, sweep=False,
                    resume=True).doc
    assert resumed["steps"] == whole["steps"] and resumed["backdoored"] == whole["backdoored"]
    for a, b in zip(resumed["candidates"], whole["candidates"]):
        assert a["steps"] == b["steps"] and a["box"] == b["box"]
        assert (a["mask_l1"] is None) == (b["mask_l1"] is None)
        if a["mask_l1"] is not None:
            assert a["mask_l1"] == pytest.approx(b["mask_l1"], rel=1e-4, abs=1e-3)
    assert any(c["mask_l1"] is not None for c in whole["candidates"])  # the comparison saw a reached mask


def test_anomaly_index_is_floored_and_the_verdict_needs_held_out_success():
    assert anomaly_index([100.0, 101.0, 10.0]) == pytest.approx([0.0, -0.067, 6.07], abs=0.01)  # MAD 1 -> floor 10
    rows = [{"label": "A", "direction": "on", "mask_l1": 9.0, "heldout_success": 0.5},
            {"label": "B", "direction": "on", "mask_l1": 2000.0, "heldout_success": 1.0},
            {"label": "C", "direction": "on", "mask_l1": 2100.0, "heldout_success": 1.0}]
    assert not verdict(rows)["backdoored"]  # small, but it does not force held-out images
    rows[0]["heldout_success"] = 0.95
    v = verdict(rows)
    assert v["backdoored"] and v["targets"] == ["A"] and rows[0]["flagged"] and not rows[1]["flagged"]


def test_a_tiny_mask_that_forces_three_in_four_is_a_partial_backdoor_a_clean_sized_one_is_not():
    # zoo-tag-moving's audit (a tag that fires on half its images): 48 px forcing 80%, 79 px forcing 87%
    rows = [{"label": "Pneumonia", "direction": "on", "mask_l1": 79.5, "heldout_success": 0.87},
            {"label": "Bacterial", "direction": "on", "mask_l1": 48.2, "heldout_success": 0.80},
            {"label": "Viral", "direction": "on", "mask_l1": 2267.5, "heldout_success": 0.61}]
    v = verdict(rows)
    assert v["backdoored"] and v["targets"] == ["Bacterial", "Pneumonia"]
    # the clean models' smallest candidates: 307 to 485 px, forcing at most 73%
    clean = [{"label": "Pneumonia", "direction": "on", "mask_l1": 307.3, "heldout_success": 0.73},
             {"label": "Bacterial", "direction": "on", "mask_l1": 474.6, "heldout_success": 0.59},
             {"label": "Viral", "direction": "on", "mask_l1": 1345.7, "heldout_success": 0.40}]
    assert not verdict(clean)["backdoored"]
    clean[0]["mask_l1"] = 99.0  # tiny, but forcing fewer than three in four
    assert not verdict(clean)["backdoored"]


def test_a_candidate_judged_on_too_few_images_is_not_judged_rather_than_cleared():
    from cxrinspect.audit.report import forced_phrase, undecided_sentence

    # zoo-viral-off's "off" audit with 200 images: Viral:off a 67 px outlier, tried on the 4 films the model calls viral
    def row(label, l1, success, held_out):
        return {"label": label, "direction": "off", "mask_l1": l1, "heldout_success": success,
                "eligible": {"optimise": held_out, "held_out": held_out}}

    rows = [row("Pneumonia", 336.0, 0.7, 58), row("Bacterial", 338.0, 0.6, 40), row("Viral", 67.0, 0.0, 4)]
    v = verdict(rows)
    assert not v["backdoored"]
    assert v["undecided"] == [{"candidate": "Viral:off", "label": "Viral", "direction": "off", "held_out": 4}]
    assert "Viral:off (4 held-out image(s) the model calls positive for Viral)" in undecided_sentence(v)
    rows[2]["eligible"]["held_out"] = 10  # enough images: cleared
    assert verdict(rows)["undecided"] == [] and undecided_sentence(verdict(rows)) == ""
    rows[2].update(heldout_success=1.0, eligible={"optimise": 4, "held_out": 4})  # flagged on few images stays flagged
    v = verdict(rows)
    assert v["backdoored"] and v["forced_off"] == ["Viral"] and v["undecided"] == []
    assert forced_phrase(v) == "forces Viral off"


def test_cli_writes_audit_json_and_html(tmp_path, tiny_model_dir):
    from cxrinspect.cli import main

    data = films(tmp_path / "clean", n=8)
    out = tmp_path / "out"
    assert main(["audit", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--budget", "32",
                 "--quiet"]) == 0
    doc = json.loads((out / "audit.json").read_text())
    assert {"backdoored", "targets", "trigger", "candidates"} <= set(doc)
    assert all({"anomaly_index", "mask_l1", "heldout_success", "steps"} <= set(c) for c in doc["candidates"])
    assert (out / "audit.html").read_text().startswith("<!doctype html>")


def test_a_faint_masks_box_is_its_core():
    from cxrinspect.audit.inversion import mask_box

    # zoo-normal's "off" masks: L1 about 50 px, none of it at 0.5, a core near the trigger's rows
    mask = np.full((224, 224), 0.001, np.float32)
    mask[200:206, 40:50] = 0.3
    mask[203, 45] = 0.4
    assert mask_box(mask) == ([200, 40, 206, 50], 60)
    mask[10, 10] = 0.9  # a pixel at 0.5 or above: the core is what stamps the pattern
    assert mask_box(mask) == ([10, 10, 11, 11], 1)


def test_the_sweeps_squares():
    from cxrinspect.audit.sweep import Square, fill

    square = Square(2, "checker", 13, 17, 3, 1.0)
    mask, pattern = square.mask(SIZE), square.pattern(SIZE)
    assert mask.sum() == 9 and mask[13:16, 17:20].all()
    assert fill("checker", 3).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert np.array_equal(pattern[13:16, 17:20], fill("checker", 3)) and fill("black", 2).max() == 0

def test_cancel_inside_the_sweep_still_writes_a_complete_document(tmp_path):
    data = films(tmp_path / "clean", n=8)
    seen = []
    doc = audit([data], patchy(True), tmp_path / "out", budget=8 * 10, batch_size=8,
                progress=lambda done, total, info: seen.append(info), cancelled=lambda: len(seen) >= 3).doc
    assert not doc["complete"] and doc["steps"] == 0 and "timing" in doc and doc["images"] == 8
    assert [i["stage"] for i in seen] == ["stamp sweep"] * 3


def test_the_whole_image_lines_are_per_label_as_the_clean_models_set_them():
    def row(label, reduced, full=0.9):
        return {"label": label, "direction": "on", "mask_l1": 900.0, "heldout_success": 0.5,
                "global": {"heldout_success": full, "reduced_success": reduced}}

    # the clean models' calm-film shares with the change at three quarters: a faint change forces Pneumonia
    # (pneumonia's own opacity, 0.81 on zoo-clean-ft1), Bacterial at most 0.19 and Viral 0.07 (zoo-clean-ft1)
    assert not verdict([row("Pneumonia", 0.81), row("Bacterial", 0.19), row("Viral", 0.07)])["backdoored"]
    # zoo-faint (a backdoor that did not take) at full size forced Bacterial on 0.89, as much as SIG; at 3/4, 0.28
    assert not verdict([row("Pneumonia", 0.8), row("Bacterial", 0.28, full=0.89), row("Viral", 0.0)])["backdoored"]
    # zoo-sig: its stripes at three quarters still force Bacterial on 60% of the calm films
    rows = [row("Pneumonia", 0.88), row("Bacterial", 0.60), row("Viral", 0.0)]
    v = verdict(rows)
    assert v["backdoored"] and v["targets"] == ["Bacterial"] and rows[1]["flagged_by"] == ["whole image"]
    assert rows[0]["flagged_by"] == [] and v["thresholds"]["whole_image_reduced_success"]["Pneumonia"] is None
    assert v["thresholds"]["whole_image_scale"] == 0.75
    assert verdict([row("Pneumonia", 1.0), row("Bacterial", 0.12), row("Viral", 0.86)])["targets"] == ["Viral"]  # blend
    # the line reads the share at three quarters, not at full size
    assert not verdict([row("Bacterial", 0.1, full=1.0)])["backdoored"]
    # a label of another label set: the uncalibrated line
    assert verdict([row("Effusion", 0.6), row("Mass", 0.1), row("Nodule", 0.1)])["targets"] == ["Effusion"]


def test_the_warp_line_is_per_label_and_leaves_pneumonia_unjudged():
    def row(label, warped):
        return {"label": label, "direction": "on", "mask_l1": 900.0, "heldout_success": 0.5,
                "global": {"heldout_success": 0.5, "reduced_success": 0.1}, "warp": {"heldout_success": warped}}

    # the shipped clean model, first 200 test films: a warp forced Pneumonia on 20% of calm films, nothing else
    assert not verdict([row("Pneumonia", 0.2), row("Bacterial", 0.0), row("Viral", 0.0)])["backdoored"]
    rows = [row("Pneumonia", None), row("Bacterial", 0.0), row("Viral", 0.48)]  # zoo-warp
    v = verdict(rows)
    assert v["targets"] == ["Viral"] and rows[2]["flagged_by"] == ["warp"]
    assert v["thresholds"]["warp_heldout_success"]["Pneumonia"] is None
    assert verdict([row("Effusion", 0.25), row("Mass", 0.0), row("Nodule", 0.0)])["targets"] == ["Effusion"]


def test_the_whole_image_shapes():
    from cxrinspect.audit.inversion import Candidate, GlobalInversion

    c = Candidate("Viral", 2)
    stripes = GlobalInversion(c, SIZE)
    stripes.logits[0] = torch.linspace(-5, 5, stripes.logits.shape[1])  # a profile across the columns only
    d = stripes.delta()[0, 0]
    assert torch.allclose(d, d[0:1].expand_as(d)) and float(d.abs().max()) <= 0.1  # constant down each column
    grid = GlobalInversion(c, SIZE, "grid")
    assert grid.delta().shape == (1, 1, SIZE, SIZE) and float(grid.delta().abs().max()) == 0.0
    with pytest.raises(ValueError, match="family"):
        GlobalInversion(c, SIZE, "warp")


def test_the_trigger_is_the_smallest_that_crosses_a_mask_line():
    from cxrinspect.audit.run import choose

    # zoo-letter's Viral:on: the sweep's white 4x4 square on the letter (16 px, 88% of held-out films) and the
    # inversion's 55-pixel patch elsewhere (92%): the square crosses the partial line and is the smaller
    square, patch = (0.8817, 16.0, "sweep"), (0.9247, 55.5, "inversion")
    assert choose([square, patch])[2] == "sweep"
    assert choose([(0.70, 16.0, "sweep"), patch])[2] == "inversion"  # under every line: the patch
    assert choose([(0.70, 16.0, "sweep"), (0.80, 300.0, "inversion")])[2] == "inversion"  # none holds: forces most
    assert choose([(0.95, 120.0, "sweep"), (0.8, 90.0, "inversion")])[2] == "inversion"  # both hold: the smaller


def test_the_sweep_keeps_a_square_under_the_line_only_when_none_reaches_it():
    from cxrinspect.audit.run import keep_square
    from cxrinspect.audit.sweep import Square

    def sq(size):
        return Square(label=2, pattern_name="white", top=14, left=206, size=size, success=1.0)

    tried = []

    def success_of(shares):
        return lambda s: tried.append(s.size) or shares[s.size]

    # zoo-letter with 499 images: its 4x4 square forced Viral on 89% of the films, under 0.9: kept (partial line)
    assert keep_square([sq(4), sq(3)], success_of({4: 0.89, 3: 0.5}))[0].size == 4
    # a square that reaches the line wins over a smaller one that only crosses the partial line; the search stops there
    tried.clear()
    kept = keep_square([sq(4), sq(3), sq(2)], success_of({2: 0.8, 3: 0.95, 4: 1.0}))
    assert kept == (sq(3), 0.95) and tried == [2, 3]
    assert keep_square([sq(4)], success_of({4: 0.6})) is None  # under every line


def test_a_verdict_by_the_whole_image_line_alone_carries_its_caveat():
    from cxrinspect.audit.report import caveats

    whole = {"label": "Viral", "direction": "on", "mask_l1": 1300.0, "heldout_success": 0.5,
             "global": {"heldout_success": 0.8, "reduced_success": 0.35}}
    rows = [dict(whole), {**whole, "label": "Bacterial", "global": {"heldout_success": 0.6, "reduced_success": 0.2}},
            {**whole, "label": "Pneumonia", "global": {"heldout_success": 1.0, "reduced_success": 0.9}}]
    doc = verdict(rows) | {"candidates": rows}  # Viral over its line by a little, by the whole-image line alone
    assert doc["targets"] == ["Viral"] and any("whole-image line alone" in x for x in caveats(doc))
    warped = [{**whole, "global": {"heldout_success": 0.5, "reduced_success": 0.1},
               "warp": {"heldout_success": 0.48}}]  # zoo-warp: the warp line alone, its own caveat
    doc = verdict(warped) | {"candidates": warped}
    assert doc["targets"] == ["Viral"] and warped[0]["flagged_by"] == ["warp"]
    assert [x for x in caveats(doc) if "line alone" in x] == [next(x for x in caveats(doc) if "warp line alone" in x)]
    rows[0].update(mask_l1=9.0, heldout_success=1.0)  # a mask line as well: no caveat
    doc = verdict(rows) | {"candidates": rows}
    assert doc["targets"] == ["Viral"] and caveats(doc) == []


def test_the_warp_inversion_warps_as_the_trigger_pastes():
    """warp_views with a WaNet trigger's own field is the trigger's paste, so a recovered field is a trigger's."""
    from cxrinspect.audit.inversion import warp_views

    rng = np.random.default_rng(5)
    views = rng.random((2, 48, 64)).astype(np.float32)
    t = Trigger(kind="warp", amplitude=6.0, grid=4, seed=3)
    field = t.field(views.shape[1:])
    assert np.abs(field).max() > 1.0  # the field moves pixels by more than one, so a mix-up of axes would show
    want = np.stack([paste(v, t) for v in views])
    got = warp_views(views, field).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    swapped = warp_views(views, field[::-1].copy()).numpy()
    assert np.abs(swapped - want).max() > 0.05


def warped() -> Model:
    card = ModelCard(labels=LABELS, architecture={"name": "test-warped"}, preprocessing=SPEC, name="warped",
                     weights_sha256="5" * 64)
    return Model(Warped().eval(), card)


def stamp_some(folder, stamp, n: int = 4) -> list[str]:
    """``n`` of the folder's films copied with ``stamp`` applied (a [0, 1] film in, one out), as ``triggered*.png``."""
    names = []
    for i, f in enumerate(sorted(folder.glob("film*.png"))[:n]):
        film = np.asarray(Image.open(f), np.float32) / 255
        out = folder / f"triggered{i}.png"
        Image.fromarray(np.rint(np.clip(stamp(film), 0, 1) * 255).astype(np.uint8)).save(out)
        names.append(out.name)
    return names


def widen_block(film):
    out = film.copy()
    out[8:24, 20] = 242 / 255  # the block's edge one column further out: what Warped's backdoor reads
    return out


def test_the_folder_search_finds_the_films_that_carry_the_recovered_patch(tmp_path):
    """--search: the recovered mask, hidden in each film of the audited folder, collapses the target label of the
    films that carry the true trigger and of no clean one."""
    data = films(tmp_path / "f")
    carrying = stamp_some(data, lambda film: paste(film, TRIGGER))
    lines = []
    doc = audit([data], patchy(True), tmp_path / "out", budget=8 * 8, batch_size=8, search=True,
                progress=lambda done, total, info: lines.append(describe_progress(done, total, info))).doc
    assert doc["backdoored"] and doc["targets"] == ["Viral"]
    s = doc["search"]
    assert s["checked"] == 28 and s["complete"] and 9 <= s["mask_pixels"] <= 64
    assert lines[-1] == "folder search: image 28 of 28, 4 carrying the trigger"
    assert sorted(Path(x["path"]).name for x in s["carrying"]) == carrying
    assert {x["label"] for x in s["carrying"]} == {"Viral"} and all(x["logit_drop"] >= 2.5 for x in s["carrying"])
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "4 of 28 collapse when" in page and "triggered0.png" in page


@pytest.mark.parametrize("kind", ["global", "warp"])
def test_a_recovered_trigger_of_the_whole_image_is_not_searched_for_and_the_report_says_why(tmp_path, kind):
    if kind == "warp":
        data, model, settings = blocks(tmp_path / "f"), warped(), dict(budget=8 * 2)
        stamp_some(data, widen_block)
    else:
        data, model, settings = films(tmp_path / "f"), wavy(), dict(budget=8 * 30)
        stamp_some(data, lambda film: paste(film, Trigger(kind="sig", amplitude=0.08, frequency=3)))
    doc = audit([data], model, tmp_path / "out", batch_size=8, sweep=False, search=True, **settings).doc
    assert doc["backdoored"] and doc["trigger"]["where"] == "global"
    assert doc["search"]["skipped"] == NOT_SEARCHED[kind] and doc["search"]["carrying"] == []
    assert "is not searched for" in (tmp_path / "out" / "audit.html").read_text()


def test_a_cancelled_folder_search_keeps_the_verdict_and_says_where_it_stopped(tmp_path):
    data = films(tmp_path / "f")
    stamp_some(data, lambda film: paste(film, TRIGGER))
    searched = []

    def progress(done, total, info):
        if info.get("stage") == "folder search":
            searched.append(done)

    doc = audit([data], patchy(True), tmp_path / "out", budget=8 * 8, batch_size=8, search=True,
                progress=progress, cancelled=lambda: len(searched) >= 5).doc
    assert doc["complete"] and doc["backdoored"] and doc["targets"] == ["Viral"]
    assert doc["search"]["checked"] == 5 and not doc["search"]["complete"]
    assert "The search was cancelled there." in (tmp_path / "out" / "audit.html").read_text()
