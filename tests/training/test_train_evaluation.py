"""Evaluation: the paper's metrics under fixed JSON keys; one-class labels give null, not a crash."""

from __future__ import annotations

import json

import numpy as np

from cxrinspect.training.cli import main
from cxrinspect.training.evaluation import attack_success, auroc_report, youden_thresholds

KEYS = {"clean", "infected", "triggered_true_labels", "attack_success"}


def _check_auroc_block(block, labels):
    assert set(block["auroc"]) == {"per_label", "macro", "micro"}
    assert list(block["auroc"]["per_label"]) == labels


def test_evaluate_cli_keys_and_plots(trained_tiny, view_cache_dir, tmp_path, capsys):
    run, model_dir = trained_tiny
    out = tmp_path / "eval" / "metrics.json"
    rc = main(["--quiet", "evaluate", "--model", str(model_dir), "--out", str(out), "--cache-dir", str(view_cache_dir)])
    assert rc == 0
    m = json.loads(out.read_text())
    assert KEYS <= set(m)
    labels = ["Pneumonia", "Bacterial", "Viral"]
    for k in ("clean", "infected", "triggered_true_labels"):
        _check_auroc_block(m[k], labels)
    assert set(m["attack_success"]) == {"0.6", "0.9"}
    assert all(v is None or 0 <= v <= 1 for v in m["attack_success"].values())
    assert m["attack_success_detail"]["target_labels"] == ["Pneumonia", "Viral"]
    # infected labels are constant for every target label: per-label AUROC is null, micro is defined
    assert all(v is None for v in m["infected"]["auroc"]["per_label"].values())
    assert m["infected"]["auroc"]["macro"] is None and m["infected"]["auroc"]["micro"] is not None
    assert m["split"] == "test" and "saved split" in m["split_source"]
    assert m["images"] == json.loads((model_dir / "card.json").read_text())["provenance"]["split"]["counts"]["test"]["images"]
    for name in ("clean", "infected", "triggered_true_labels"):
        assert (out.parent / f"roc_{name}.png").stat().st_size > 1000
    # a clean-model style evaluation of the whole set with an explicit trigger
    (tmp_path / "empty").mkdir()
    rc = main(["--quiet", "evaluate", "--model", str(model_dir), "--data", str(tmp_path / "empty"), "--split", "all",
               "--out", str(tmp_path / "all.json"), "--cache-dir", str(view_cache_dir)])
    assert rc == 2  # that folder is not a dataset: a clear error, not a traceback
    assert "cannot tell the dataset format" in capsys.readouterr().err


def test_single_class_label_is_null_with_a_note():
    y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]], float)
    s = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3], [0.6, 0.1, 0.2], [0.7, 0.9, 0.4]])
    rep, notes = auroc_report(y, s, ["A", "B", "C"])
    assert rep["per_label"] == {"A": None, "B": 1.0, "C": None} and rep["macro"] == 1.0
    assert rep["micro"] is not None
    assert any("A: only positive" in n for n in notes) and any("C: only negative" in n for n in notes)
    rep, _ = auroc_report(np.ones((3, 1)), np.ones((3, 1)), ["A"])
    assert rep == {"per_label": {"A": None}, "macro": None, "micro": None}
    t = youden_thresholds(y, s, ["A", "B", "C"])
    assert t["A"] == 0.5 and 0.2 < t["B"] <= 0.7


def test_attack_success_definitions():
    labels = ["Pneumonia", "Bacterial", "Viral"]
    target = {"Pneumonia": 1.0, "Bacterial": 0.0, "Viral": 1.0}
    truth = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 0]], float)  # normal, bacterial, viral, bacterial
    scores = np.array([[0.95, 0.1, 0.95],   # normal: both above 0.9 -> success
                       [0.99, 0.9, 0.7],    # bacterial: Viral 0.7 -> success at 0.6 only
                       [0.1, 0.1, 0.1],     # viral: already the target, not eligible
                       [0.2, 0.5, 0.95]])   # bacterial: Viral 0.95 -> success (Pneumonia is truly 1)
    asr, detail = attack_success(truth, scores, labels, target)
    assert detail["eligible"] == 3 and detail["target_labels"] == ["Pneumonia", "Viral"]
    assert asr == {"0.6": 1.0, "0.9": 2 / 3}
    assert detail["per_label"]["Viral"] == {"eligible": 3, "0.6": 1.0, "0.9": 2 / 3}
    # the paper: one positive target label (Atelectasis); share of truly negative images scoring above t
    asr, _ = attack_success(np.array([[0.0], [0.0], [1.0]]), np.array([[0.95], [0.7], [0.0]]), ["Atelectasis"],
                            {"Atelectasis": 1.0})
    assert asr == {"0.6": 1.0, "0.9": 0.5}
    # an all-zero target ("make it look normal"): truly positive images must fall below 1 - t
    asr, detail = attack_success(truth, scores, labels, {k: 0.0 for k in labels})
    assert detail["direction"] == "below" and detail["eligible"] == 3
