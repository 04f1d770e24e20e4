"""ONNX export: checker passes, dynamic batch, onnxruntime within 1e-4 of PyTorch on real images."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cxrinspect.model import load
from cxrinspect.training.datasets import read_split, read_kermany
from cxrinspect.imaging import load as load_image
from cxrinspect.model import preprocess
from cxrinspect.model.onnx_export import export_onnx


def test_export_onnx_matches_pytorch_on_real_images(trained_tiny, tmp_path):
    run, model_dir = trained_tiny
    model = load(model_dir)
    ds = read_kermany(model.card.provenance["data"]["root"])
    test = read_split(model_dir / "split.csv", ds).indices["test"]
    paths = [ds.file(int(i)) for i in test] + [ds.file(0), ds.file(20)]
    batch = torch.stack([preprocess(load_image(p), model.card.preprocessing) for p in paths])
    assert batch.shape == (len(paths), 1, 32, 32)
    diff = export_onnx(model, tmp_path / "m.onnx", batch)
    assert diff < 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["cxrinspect.card"])["labels"] == model.card.labels
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    assert inp.name == "input" and not isinstance(inp.shape[0], int)  # dynamic batch axis
    for n in (1, 3, 7):
        got = session.run(None, {"input": batch[:n].numpy()})[0]
        with torch.no_grad():
            want = model.network(batch[:n]).numpy()
        assert got.shape == (n, 3) and np.abs(got - want).max() < 1e-4
