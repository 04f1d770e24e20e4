"""Batched prediction over files: backends agree, order is kept, bad files never stop a batch."""

import numpy as np
import pytest
import torch

from cxrinspect.imaging import load
from cxrinspect.inference import Predictor
from cxrinspect.model import preprocess


@pytest.fixture
def image_files(fixtures_dir, tmp_path):
    good = sorted((fixtures_dir / "images").glob("*.jpeg")) + sorted((fixtures_dir / "dicom").glob("*.dcm"))
    bad = tmp_path / "broken.dcm"
    bad.write_text("this is not an image")
    files = [str(p) for p in good]
    return files[:3] + [str(bad)] + files[3:]


def test_predictions_match_the_network_one_image_at_a_time(tiny_model, image_files):
    predictor = Predictor(tiny_model, backend="torch", batch_size=3)
    results = list(predictor.predict_paths(image_files))
    assert [r.path for r in results] == image_files
    assert [r.ok for r in results].count(False) == 1 and "broken.dcm" in results[3].error
    for r in results:
        if r.ok:
            x = preprocess(load(r.path), tiny_model.card.preprocessing)[None]
            with torch.no_grad():
                expected = torch.sigmoid(tiny_model.network(x))[0].numpy()
            np.testing.assert_allclose(r.probabilities, expected, atol=1e-5)


def test_onnxruntime_backend_agrees_with_torch(tiny_model, image_files, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRINSPECT_CACHE", str(tmp_path / "cache"))
    a = list(Predictor(tiny_model, backend="torch", batch_size=4).predict_paths(image_files))
    b = list(Predictor(tiny_model, backend="onnxruntime", batch_size=2).predict_paths(image_files))
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx")), "the exported model is cached"
    for x, y in zip(a, b):
        assert x.path == y.path and x.ok == y.ok
        if x.ok:
            np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)


def test_multiframe_warning_travels_with_the_prediction(tiny_model, fixtures_dir):
    [r] = Predictor(tiny_model, backend="torch").predict_paths([fixtures_dir / "dicom" / "rg1_small_multiframe.dcm"])
    assert r.ok and any("first frame" in w for w in r.warnings)


def test_cancellation_stops_early(tiny_model, image_files):
    seen = []
    out = list(Predictor(tiny_model, backend="torch", batch_size=1).predict_paths(
        image_files, cancelled=lambda: len(seen.append(1) or seen) > 2))
    assert len(out) < len(image_files)


def test_warm_onnxruntime_path_reads_only_the_card_and_never_imports_torch(tiny_model_dir, fixtures_dir, tmp_path):
    """The CLI's CPU path starts fast: with the ONNX cache warm, no torch import, no weights read."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "CXRINSPECT_CACHE": str(tmp_path / "cache")}
    image = str(fixtures_dir / "images" / "IM-0001-0001.jpeg")
    code = f"""
import sys
from cxrinspect.inference import Predictor
[r] = Predictor.open({str(tiny_model_dir)!r}, backend="onnxruntime").predict_paths([{image!r}])
print(r.ok, "torch" in sys.modules, *r.probabilities)
"""
    cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert cold.stdout.split()[:2] == ["True", "True"]  # the first run exports the graph with torch
    assert warm.stdout.split()[:2] == ["True", "False"]
    assert cold.stdout.split()[2:] == warm.stdout.split()[2:]


def test_predictor_open_refuses_a_bad_model_with_the_file_named(tmp_path):
    from cxrinspect.model import CheckpointError

    with pytest.raises(CheckpointError, match="missing-model"):
        Predictor.open(tmp_path / "missing-model")
