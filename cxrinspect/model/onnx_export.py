"""ONNX export of a classifier (logits, dynamic batch axis) and the check against PyTorch."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Model

INPUT, OUTPUT = "input", "logits"


def export_onnx(model: Model, path: str | Path, opset: int = 18) -> Path:
    """Write ``model`` as ONNX (input ``input`` N x C x H x W normalised, output ``logits``), atomically.

    The model card travels in the ONNX metadata (``cxrinspect.card``) so the file stays self-describing.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model.card.preprocessing
    network = model.network.eval().cpu().float()
    example = torch.zeros(2, spec.channels, spec.input_size, spec.input_size)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:  # the TorchScript exporter is several times faster on DenseNet; dynamo where it is gone
                torch.onnx.export(network, (example,), tmp, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                                  opset_version=opset, dynamo=False)
            except (TypeError, RuntimeError):
                torch.onnx.export(network, (example,), tmp, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                                  dynamo=True)
        proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, {"cxrinspect.card": model.card.to_json()})
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_difference(model: Model, path: str | Path, inputs: torch.Tensor) -> float:
    """Largest |logit difference| between PyTorch and onnxruntime on ``inputs`` (N x C x H x W)."""
    session = onnx_session(path)
    with torch.inference_mode():
        expected = model.network.eval()(inputs).numpy()
    got = session.run([OUTPUT], {INPUT: inputs.numpy().astype(np.float32)})[0]
    return float(np.max(np.abs(expected - got)))
