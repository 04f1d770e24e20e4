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
    assert len(rows) == len([p for p in SAMPLES.iterdir() if p.suffix in (".jpeg", ".dcm")])
    assert all(r["status"] == "ok" for r in rows)
    pneumonia = {name: float(r["Pneumonia"]) for r in rows for name in [Path(r["path"]).name]}
    sick = [v for k, v in pneumonia.items() if k.startswith(("kermany-bacteria", "kermany-virus"))]
    healthy = [v for k, v in pneumonia.items() if k.startswith("kermany-normal")]
    # held-out patients: the model separates them on average (its test Pneumonia AUROC is in the card)
    assert np.mean(sick) > np.mean(healthy) + 0.3
    assert read_card(bundled).name
