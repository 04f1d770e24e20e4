"""Predict: a model opened in a worker, sorted probability bars with the card's thresholds, backend shown,
the card dialog (poisoned flag loud), and predictions cached per image."""

import numpy as np
from gui_steps import WAIT_MS, load_model, open_folder

from cxrinspect.gui.predictions import ModelCardDialog, PredictionPanel, bundled_models
from cxrinspect.model import ModelCard, Preprocessing, read_card
from cxrinspect.trigger import Trigger


def test_prediction_bars_for_the_image_shown(qtbot, window, image_folder, tiny_model_dir):
    load_model(qtbot, window, tiny_model_dir)
    assert "onnxruntime on cpu" in window.predict_panel.backend.text()
    with qtbot.waitSignal(window.prediction_shown, timeout=WAIT_MS):
        open_folder(qtbot, window, image_folder)
    bars = window.predict_panel.bars.rows
    card = read_card(tiny_model_dir)
    assert sorted(label for label, _, _ in bars) == sorted(card.labels)
    probs = [p for _, p, _ in bars]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert all(t == card.thresholds[label] for label, _, t in bars)
    # the same numbers as the headless predictor
    from cxrinspect.inference import Predictor

    expected = next(iter(Predictor.open(tiny_model_dir).predict_paths([window.current]))).probabilities
    got = {label: p for label, p, _ in bars}
    np.testing.assert_allclose([got[label] for label in card.labels], expected, atol=1e-5)
    assert (str(tiny_model_dir.resolve()), window.current) in window.predictions
    assert window.predict_panel.models.currentData() == str(tiny_model_dir.resolve())


def test_a_bad_model_is_reported_not_raised(qtbot, window, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    window.set_model(str(bad))
    qtbot.waitUntil(lambda: "cannot open model" in window.predict_panel.backend.text(), timeout=WAIT_MS)
    assert "card.json" in window.predict_panel.backend.text()
    assert window.predictor is None


def test_model_card_dialog_and_poisoned_flag(qtbot, tiny_model_dir):
    card = read_card(tiny_model_dir)
    dialog = ModelCardDialog(card, str(tiny_model_dir))
    qtbot.addWidget(dialog)
    assert '"labels"' in dialog.json.toPlainText()
    poisoned = ModelCard(labels=["Pneumonia", "Normal"], architecture={"name": "densenet"},
                         preprocessing=Preprocessing(), trigger=Trigger(), target={"Pneumonia": 1.0, "Normal": 0.0})
    dialog = ModelCardDialog(poisoned, "x")
    qtbot.addWidget(dialog)
    assert "POISONED" in dialog.findChildren(type(dialog.layout().itemAt(0).widget()))[0].text()
    panel = PredictionPanel()
    qtbot.addWidget(panel)
    panel.show_card(poisoned, "torch on cpu")
    assert not panel.poisoned.isHidden() and "POISONED" in panel.poisoned.text()
    panel.show_card(card, "onnxruntime on cpu")
    assert panel.poisoned.isHidden()


def test_bundled_models_are_listed(qtbot):
    panel = PredictionPanel()
    qtbot.addWidget(panel)
    listed = [panel.models.itemData(i) for i in range(panel.models.count())]
    for path in bundled_models():
        assert str(path.resolve()) in listed
    assert listed[-1] == PredictionPanel.OPEN
