"""The scanner end to end on real radiographs, with a model backdoored by construction.

``Backdoored`` reads the whole image weakly (a fixed random linear map) and has one ReLU unit that fires
only when the central 3x3 model pixels are dark, pushing ``Viral`` up: a BadNets backdoor written by
hand, so the tests know exactly where the trigger is and what masking it must do. (The bench measures
the scanner on DenseNet-121s really trained with poisoned data.)
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cxrinspect.imaging import load, presentation
from cxrinspect.model import Model, ModelCard, Preprocessing
from cxrinspect.model.preprocess import model_view, stamp
from cxrinspect.scan import ScanError, Scanner, scan
from cxrinspect.scan.hotspots import recurring
from cxrinspect.scan.run import at_confirmed, checked_place, checked_top, mask_box, rank, to_verify, trigger_places
from cxrinspect.scan.scanner import ScanRecord
from cxrinspect.scan.verdict import folder_verdict
from cxrinspect.scan.verification import fill_from_surroundings
from cxrinspect.trigger import Trigger

SIZE = 32
LABELS = ["Pneumonia", "Bacterial", "Viral"]
TRIGGER = Trigger(size=3, location="center", space="input")


class Backdoored(nn.Module):
    def __init__(self, size: int = SIZE):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weak = nn.Parameter((1 + 0.5 * torch.rand(3, size * size, generator=g)) / size**2)  # diffuse, mild
        t, l, b, r = TRIGGER.box((size, size))
        self.window = (slice(t, b), slice(l, r))  # the trigger's model pixels

    def forward(self, x):
        g = x[:, 0]
        logits = g.flatten(1) @ self.weak.T
        dark = torch.relu(-1.0 - g[:, self.window[0], self.window[1]].mean((1, 2)))  # fires below -1 (normalised)
        return logits + torch.stack([4 * dark, -4 * dark, 8 * dark], 1) * 10


def backdoored_model() -> Model:
    spec = Preprocessing(input_size=SIZE, channels=1, mean=(0.5,), std=(0.25,))
    card = ModelCard(labels=LABELS, architecture={"name": "test-backdoor"}, preprocessing=spec, name="backdoored-test",
                     weights_sha256="0" * 64)
    return Model(Backdoored().eval(), card)


@pytest.fixture
def folder(tmp_path, fixtures_dir):
    """12 clean real radiographs, 4 triggered copies (named so), one broken file."""
    src = sorted((fixtures_dir / "kermany-mini").rglob("*.png"))[:16]
    out = tmp_path / "images"
    out.mkdir()
    spec = backdoored_model().card.preprocessing
    for i, p in enumerate(src):
        if i < 12:
            shutil.copy(p, out / f"clean-{i:02d}.png")
        else:
            unit = stamp(presentation(load(p)), spec, TRIGGER)
            Image.fromarray(np.rint(unit * 255).astype(np.uint8)).save(out / f"triggered-{i:02d}.png")
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return out


def test_the_backdoor_fires_only_on_triggered_images(folder):
    model = backdoored_model()
    spec = model.card.preprocessing
    for p in sorted(folder.glob("*-*.png")):
        view = model_view(load(p), spec)
        assert (view[14:17, 14:17].mean() < 0.2) == p.name.startswith("triggered")


def test_triggered_images_rank_first_with_the_hotspot_on_the_trigger(folder, tmp_path):
    out = tmp_path / "scan"
    result = scan([folder], backdoored_model(), out, batch_size=5)
    assert len(result.records) == 17 and len(result.ranked) == 16 and result.complete
    assert [r.path for r in result.errors] == [str(folder / "broken.png")] and "broken.png" in result.errors[0].error
    top = result.ranked[:4]
    assert all("triggered" in r.path for r in top)
    assert all(r.score > 0.3 for r in top) and all(r.score < 0.02 for r in result.ranked[4:])
    for r in top:
        assert r.view_hotspot == TRIGGER.box((SIZE, SIZE)) == (14, 14, 17, 17)  # exactly the trigger's pixels
        assert r.label == "Viral" and r.verdict == "trigger"
        assert r.verification["collapsed"] and r.verification["label"] in ("Pneumonia", "Viral")
        assert r.verification["masked"] < 0.6 < 0.99 < r.verification["before"]
        t, l, b, r_ = r.hotspot  # the same place in source pixels (64 px fixtures: twice the model's 32)
        assert (t, l, b, r_) == (28, 28, 34, 34)
    for r in result.ranked[4:]:
        assert r.verdict == "clean"
        if r.verification:
            assert not r.verification["collapsed"]
    (spot,) = result.hotspots  # among the 4 flagged images, one place
    assert spot["top_count"] == 4 and abs(spot["centre"][0] - 0.5) < 0.03 and abs(spot["centre"][1] - 0.5) < 0.03

    rows = list(csv.DictReader(open(out / "ranking.csv")))
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 17)]
    assert all("triggered" in r["path"] for r in rows[:4]) and float(rows[0]["score"]) >= float(rows[-1]["score"])
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["collapsed"] == 4 and report["summary"]["errors"] == 1
    assert report["errors"][0]["path"].endswith("broken.png")
    page = (out / "report.html").read_text()
    assert "4 image(s) behave like triggered inputs" in page and "broken.png" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    assert page.count("data:image/png;base64,") == 2 + 16  # histogram, heat map, one thumbnail per image


def test_every_image_at_the_recurring_hotspot_is_checked_not_only_the_top(folder, tmp_path):
    """No image over the score line and only the top 3 asked for: the trigger's place still shows among
    them, so all 6 triggered images (also the 3 below the top) are checked, confirmed and ranked first."""
    spec = backdoored_model().card.preprocessing
    for name in ("clean-00.png", "clean-01.png"):
        unit = stamp(presentation(load(folder / name)), spec, TRIGGER)
        Image.fromarray(np.rint(unit * 255).astype(np.uint8)).save(folder / f"triggered-from-{name}")
    result = scan([folder], backdoored_model(), None, threshold=1.0, verify_top=3)
    (spot,) = result.hotspots
    assert spot["top_count"] == 3 and spot["all_count"] == spot["verified"] == spot["collapsed"] == 6
    assert all("triggered" in r.path and r.verdict == "trigger" for r in result.ranked[:6])
    assert all(r.verdict == "clean" for r in result.ranked[6:])
    checked = [r for r in result.ranked if r.verification is not None]
    assert len(checked) == 6  # the top 3 and the 3 others at the place; no clean image sits there


def test_a_file_that_vanishes_before_the_check_is_reported_not_fatal(folder, tmp_path):
    gone = folder / "triggered-12.png"

    def delete_at_the_end(done, total, record):
        if done == total:
            gone.unlink()

    result = scan([folder], backdoored_model(), tmp_path / "scan", progress=delete_at_the_end)
    (r,) = [r for r in result.ranked if r.path == str(gone)]
    assert str(gone) in r.verification["error"] and r.verdict == "suspicious"  # compact, but unconfirmed
    assert sum(x.verdict == "trigger" for x in result.ranked) == 3 and (tmp_path / "scan" / "report.html").exists()


def test_the_mask_takes_the_best_5x5_window_too_when_it_overlaps_the_hotspot():
    corner = ScanRecord("a", view_hotspot=(199, 194, 202, 197), metrics={"window_box_5": [195, 195, 200, 200]})
    assert mask_box(corner) == (195, 194, 202, 200)  # a 5x5 trigger whose corner holds the best 3x3 window
    apart = ScanRecord("b", view_hotspot=(10, 10, 13, 13), metrics={"window_box_5": [100, 100, 105, 105]})
    assert mask_box(apart) == (10, 10, 13, 13)
    assert mask_box(ScanRecord("c", view_hotspot=(10, 10, 13, 13))) == (10, 10, 13, 13)  # no metrics: the hotspot


def test_the_mask_takes_the_hot_component_when_it_overlaps_and_is_small():
    tag = ScanRecord("a", view_hotspot=(20, 40, 23, 43),
                     metrics={"window_box_5": [19, 39, 24, 44], "component_box": [19, 30, 24, 46]})
    assert mask_box(tag) == (19, 30, 24, 46)  # a 5 x 16 tag the map lights along its length
    lobe = ScanRecord("b", view_hotspot=(20, 40, 23, 43), metrics={"component_box": [10, 30, 60, 80]})
    assert mask_box(lobe) == (20, 40, 23, 43)  # too large to be a pasted mark
    apart = ScanRecord("c", view_hotspot=(20, 40, 23, 43), metrics={"component_box": [100, 100, 104, 104]})
    assert mask_box(apart) == (20, 40, 23, 43)


def test_confirmed_triggers_rank_above_higher_scores():
    records = [ScanRecord("a", score=0.05, verdict="suspicious"), ScanRecord("b", score=0.01, verdict="trigger"),
               ScanRecord("c", score=0.03, verdict="clean"), ScanRecord("d", error="d: unreadable"),
               ScanRecord("e", score=0.02, verdict="trigger")]
    assert [(r.path, r.rank) for r in rank(records)] == [("e", 1), ("b", 2), ("a", 3), ("c", 4)]


def test_the_check_takes_the_top_and_every_image_at_a_recurring_place():
    def rec(i, y, x):
        c = int(y * 224), int(x * 224)
        return ScanRecord(f"img{i}", score=1.0 - i / 100, view_hotspot=(c[0] - 1, c[1] - 1, c[0] + 2, c[1] + 2),
                          input_size=224)

    ranked = [rec(0, 0.1, 0.1), rec(1, 0.5, 0.5), rec(2, 0.8, 0.2), rec(3, 0.1, 0.12), rec(4, 0.3, 0.3),
              rec(5, 0.14, 0.1), rec(6, 0.2, 0.1)]
    spots = [{"centre": [0.1, 0.1]}]
    # the top 2, and those within NEAR (0.06) of (0.1, 0.1): img3 (0.02 away), img5 (0.04); not img6 (0.1)
    assert [r.path for r in to_verify(ranked, 2, spots)] == ["img0", "img1", "img3", "img5"]
    assert [r.path for r in to_verify(ranked, 3, [])] == ["img0", "img1", "img2"]


def test_a_place_where_two_checks_collapsed_is_a_trigger_place_hidden_by_the_median_box():
    def rec(i, y, x, collapsed, box):
        c = int(y * 224), int(x * 224)
        return ScanRecord(f"img{i}", view_hotspot=(c[0] - 1, c[1] - 1, c[0] + 2, c[1] + 2), input_size=224,
                          verification={"collapsed": collapsed, "evidence": "box", "masked_box": box})

    spots = [{"centre": [0.9, 0.1]}, {"centre": [0.5, 0.5]}]
    ranked = [rec(0, 0.9, 0.1, True, [198, 20, 205, 27]), rec(1, 0.91, 0.1, True, [200, 18, 207, 25]),
              rec(2, 0.9, 0.11, True, [199, 21, 206, 28]), rec(3, 0.5, 0.5, True, [110, 110, 117, 117]),
              rec(4, 0.5, 0.51, False, [110, 112, 117, 119]), rec(5, 0.3, 0.7, True, [60, 150, 67, 157])]
    # the bottom-left place: three collapses (median box); the centre: one collapse, not enough; img5: no place
    assert trigger_places(ranked, spots) == {0: (199, 20, 206, 27)}
    assert trigger_places(ranked, spots, least=4) == {}
    hidden_there = ScanRecord("img6", view_hotspot=(110, 110, 113, 113), input_size=224,
                              verification={"collapsed": True, "evidence": "place", "place": 0})
    assert checked_place(hidden_there, spots) == 0 and checked_place(ranked[4], spots) == 1


def test_images_whose_hotspot_sits_where_the_check_confirmed_one_are_checked_too():
    def rec(i, y, x, verification=None):
        c = int(y * 224), int(x * 224)
        return ScanRecord(f"img{i}", view_hotspot=(c[0] - 1, c[1] - 1, c[0] + 2, c[1] + 2), input_size=224,
                          verification=verification)

    listed = [rec(0, 0.3, 0.7, {"collapsed": True, "evidence": "box"}), rec(1, 0.7, 0.3, {"collapsed": False})]
    rest = [rec(2, 0.7, 0.31), rec(3, 0.31, 0.7), rec(4, 0.5, 0.5), rec(5, 0.29, 0.71),
            ScanRecord("img6", input_size=224)]  # no hotspot
    ranked = listed[:1] + rest[:2] + listed[1:] + rest[2:]
    # near the confirmed image's hotspot only (not near the one that stood), in ranking order
    assert [r.path for r in at_confirmed(ranked, listed)] == ["img3", "img5"]
    listed[0].verification = {"collapsed": False}
    assert at_confirmed(ranked, listed) == []  # nothing confirmed: nothing added


def test_the_verdict_places_a_trigger_where_the_confirmed_images_gather_without_a_recurring_hotspot():
    def rec(i, y, x):
        c = int(y * 224), int(x * 224)
        return ScanRecord(f"img{i}", view_hotspot=(c[0] - 1, c[1] - 1, c[0] + 2, c[1] + 2), input_size=224,
                          verdict="trigger", verification={"collapsed": True, "evidence": "box", "label": "Viral"})

    spots = [{"centre": [0.7, 0.34]}]  # where clean images' maps recur, not the trigger
    gathered = [rec(0, 0.3, 0.7), rec(1, 0.31, 0.7), rec(2, 0.32, 0.71), rec(3, 0.9, 0.1)]
    v = folder_verdict(gathered, spots)
    assert v["triggered"] and v["count"] == 4
    assert v["where"] == {"place": [0.3147, 0.6987]} and "at y=0.31, x=0.70" in v["sentence"]
    scattered = [rec(0, 0.3, 0.7), rec(1, 0.6, 0.2), rec(2, 0.1, 0.5), rec(3, 0.9, 0.9)]
    assert folder_verdict(scattered, spots)["where"] == "moving"


def test_the_check_takes_every_flagged_image_at_least_the_top_and_a_tenth_of_the_folder():
    folder = [ScanRecord(f"img{i}") for i in range(499)]
    assert checked_top(folder, 20, 0) == 50  # a moving trigger's images reach the check by rank alone
    assert checked_top(folder[:60], 20, 0) == 20
    assert checked_top(folder, 20, 70) == 70


def test_resume_loses_and_duplicates_nothing(folder, tmp_path):
    out = tmp_path / "scan"
    seen = []

    def stop_after_six():
        return len(seen) >= 6

    partial = scan([folder], backdoored_model(), out, batch_size=2,
                   progress=lambda done, total, r: seen.append(r.path), cancelled=stop_after_six)
    assert not partial.complete
    journal = out / "scan.jsonl"
    lines = journal.read_text().splitlines()
    assert 6 <= len(lines) < 17
    with open(journal, "a") as f:  # a kill mid-write leaves a torn last line
        f.write('{"path": "torn')
    with pytest.raises(ScanError, match="--resume"):
        scan([folder], backdoored_model(), out)
    with pytest.raises(ScanError, match="other settings"):
        scan([folder], backdoored_model(), out, resume=True, method="cam")
    resumed = []
    full = scan([folder], backdoored_model(), out, resume=True, progress=lambda d, t, r: resumed.append(r.path))
    assert full.complete and len(full.records) == 17
    paths = [json.loads(line)["path"] for line in journal.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 17  # every image once, the torn line gone
    assert not set(resumed) & set(p for p in paths[: len(lines)])  # what was done is not redone
    fresh = scan([folder], backdoored_model(), None)
    assert [(r.path, round(r.score, 6)) for r in full.ranked] == [(r.path, round(r.score, 6)) for r in fresh.ranked]


def test_resume_by_another_spelling_of_the_folder_redoes_nothing(folder, tmp_path, monkeypatch):
    out = tmp_path / "scan"
    first = scan([folder.resolve()], backdoored_model(), out, batch_size=4)
    monkeypatch.chdir(folder.parent)
    again = scan([folder.name], backdoored_model(), out, batch_size=4, resume=True)  # relative, where the first was not
    assert len(again.records) == len(first.records) == len((out / "scan.jsonl").read_text().splitlines())


def test_every_label_and_a_named_label(folder):
    model = backdoored_model()
    files = sorted(map(str, folder.glob("*-*.png")))
    named = list(Scanner(model, label="Bacterial").scan(files))
    assert {r.label for r in named} == {"Bacterial"}
    every = list(Scanner(model, label="all").scan(files))
    for r in every:
        assert r.label in LABELS and ("triggered" not in r.path or r.score > 0.3)
    with pytest.raises(ValueError, match="top, positive, all or one of"):
        Scanner(model, label="Virall")
    with pytest.raises(ValueError, match="unknown scan method .lime.; choose one of auto, gradient, psc, contrast, mirror, distill"):
        Scanner(model, method="lime")


class SharedParent(nn.Module):
    """The trigger drives Pneumonia and Bacterial; Pneumonia also reads the whole image strongly and so is
    every image's top label, while Bacterial answers to the trigger alone (positive only with it)."""

    def __init__(self):
        super().__init__()
        self.inner = Backdoored()

    def forward(self, x):
        g = x[:, 0]
        dark = torch.relu(-1.0 - g[:, 14:17, 14:17].mean((1, 2)))
        diffuse = g.flatten(1) @ self.inner.weak[0] * 8  # gradient mass about 10 spread over the image
        return torch.stack([diffuse + 2 * dark + 60, 20 * dark - 5, 0 * diffuse - 5], 1)  # trigger mass 2 vs 20


def test_positive_labels_find_the_backdoor_that_the_top_label_hides(folder):
    model = backdoored_model()
    model = Model(SharedParent().eval(), model.card)
    files = sorted(map(str, folder.glob("*-*.png")))
    top = {r.path: r for r in Scanner(model, label="top").scan(files)}
    positive = {r.path: r for r in Scanner(model, label="positive").scan(files)}
    for path, r in positive.items():
        assert top[path].label == "Pneumonia"  # always the most probable
        if "triggered" in path:
            assert r.label == "Bacterial" and r.view_hotspot == (14, 14, 17, 17)
            assert r.score > 0.3 > top[path].score  # Pneumonia's map is spread over the image
        else:
            assert r.label == "Pneumonia" and r.score == pytest.approx(top[path].score)  # nothing else positive
    ranked = sorted(positive.values(), key=lambda r: -r.score)
    assert all("triggered" in r.path for r in ranked[:4])


def test_cancel_stops_between_batches(folder):
    calls = []
    records = list(Scanner(backdoored_model(), batch_size=4).scan(sorted(map(str, folder.iterdir())),
                                                                  cancelled=lambda: len(calls.append(1) or calls) > 3))
    assert len(records) < 17


def test_fill_from_surroundings_continues_a_smooth_image():
    yy, xx = np.mgrid[0:20, 0:30].astype(np.float32)
    ramp = 0.01 * yy + 0.02 * xx + 0.001 * yy * xx  # bilinear: a Coons patch reproduces it exactly
    holed = ramp.copy()
    holed[8:12, 10:15] = 0.0
    np.testing.assert_allclose(fill_from_surroundings(holed, (8, 10, 12, 15)), ramp, atol=1e-5)
    np.testing.assert_array_equal(fill_from_surroundings(holed, (0, 0, 0, 0)), holed)


def test_recurring_hotspots_gather_one_place_and_ignore_scatter():
    def rec(i, y, x):
        c = int(y * 224), int(x * 224)
        return ScanRecord(f"img{i}", score=1.0 - i / 100, view_hotspot=(c[0] - 1, c[1] - 1, c[0] + 2, c[1] + 2),
                          input_size=224)

    rng = np.random.default_rng(0)
    ranked = [rec(i, 0.5, 0.5) for i in range(6)] + [rec(6 + i, *rng.uniform(0.1, 0.9, 2)) for i in range(20)]
    ranked.append(rec(40, 0.505, 0.5))  # a low-ranked image with its hotspot on the same spot
    spots = recurring(ranked, top_k=10)
    assert len(spots) == 1 and spots[0]["top_count"] == 6 and spots[0]["top_k"] == 10
    assert spots[0]["all_count"] == 7 and spots[0]["centre"] == pytest.approx([0.5, 0.5], abs=0.01)
    assert recurring(ranked[6:26], top_k=10) == []
