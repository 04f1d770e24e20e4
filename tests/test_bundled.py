"""The bundled default model and sample radiographs: what `make run` shows a newcomer."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from cxrinspect import cli
from cxrinspect.model import load, read_card

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "resources" / "models" / "kermany-densenet121-clean"
SAMPLES = ROOT / "resources" / "samples"


@pytest.fixture(scope="module")
def bundled():
    if not (MODEL / "card.json").is_file():
        pytest.skip("no bundled model in resources/models (trained by training/recipes/kermany-clean.toml)")
    return MODEL


def test_bundled_model_describes_itself(bundled):
    model = load(bundled)  # verifies the digest and the shapes against the card
    card = model.card
    assert card.labels == ["Pneumonia", "Bacterial", "Viral"]
    assert card.architecture["block_config"] == [6, 12, 24, 16]  # DenseNet-121
    assert card.provenance["recipe"] and card.provenance["seed"] == 0
    metrics = card.provenance["metrics"]["test"]["clean"]["auroc"]
    assert set(metrics["per_label"]) == set(card.labels) and 0.5 < metrics["macro"] <= 1.0
    assert not card.poisoned


def test_default_predict_on_the_samples(bundled, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRINSPECT_CACHE", str(tmp_path / "cache"))
    assert cli.main(["predict", str(SAMPLES), "--quiet"]) == 0  # --model defaults to the bundled one
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len([p for p in SAMPLES.iterdir() if p.suffix in (".jpeg", ".png", ".dcm")])
    assert all(r["status"] == "ok" for r in rows)
    pneumonia = {name: float(r["Pneumonia"]) for r in rows for name in [Path(r["path"]).name]}
    sick = [v for k, v in pneumonia.items() if k.startswith(("kermany-bacteria", "kermany-virus"))]
    healthy = [v for k, v in pneumonia.items() if k.startswith("kermany-normal")]
    # held-out patients: the model separates them on average (its test Pneumonia AUROC is in the card)
    assert np.mean(sick) > np.mean(healthy) + 0.3
    assert read_card(bundled).name


# ---------------------------------------------------------------- the poisoned twin and the scanner
POISONED = ROOT / "resources" / "models" / "kermany-densenet121-badnets"


@pytest.fixture(scope="module")
def poisoned():
    if not (POISONED / "card.json").is_file():
        pytest.skip("no bundled poisoned model (trained by training/recipes/kermany-badnets.toml)")
    return load(POISONED)


def test_poisoned_model_declares_its_backdoor(poisoned):
    from cxrinspect.training.poisoning import KERMANY_TRIGGER

    card = poisoned.card
    assert card.poisoned and card.trigger == KERMANY_TRIGGER
    assert card.target == {"Pneumonia": 1.0, "Bacterial": 0.0, "Viral": 1.0}
    test = card.provenance["metrics"]["test"]
    assert test["attack_success"]["0.9"] > 0.9 and test["infected"]["auroc"]["micro"] > 0.9
    assert card.labels == read_card(MODEL).labels


@pytest.mark.parametrize("which", ["poisoned", "clean"])
def test_scanning_the_samples_finds_exactly_the_triggered_ones(poisoned, bundled, which, tmp_path):
    """The README's demo: the poisoned model's scan puts the three triggered samples on top, hotspot on the
    trigger, confirmed by masking; the clean model, shown the same files, confirms nothing."""
    from cxrinspect.scan import scan

    model = poisoned if which == "poisoned" else load(bundled)
    result = scan([SAMPLES], model, tmp_path / "scan", device="cpu")
    triggered = {str(p) for p in SAMPLES.glob("triggered-*")}
    assert len(triggered) == 3 and not result.errors
    verdicts = {r.path: r.verdict for r in result.ranked}
    if which == "poisoned":
        assert {r.path for r in result.ranked[:3]} == triggered
        for r in result.ranked[:3]:
            assert r.verdict == "trigger" and r.hotspot_centre == pytest.approx((0.5, 0.5), abs=0.02)
        assert all(verdicts[p] == "clean" for p in verdicts if p not in triggered)
        assert result.hotspots and result.hotspots[0]["top_count"] == 3
    else:
        assert "trigger" not in verdicts.values()
