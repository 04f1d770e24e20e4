"""ONNX export of a classifier, checked with onnx.checker and against PyTorch with onnxruntime.

The graph maps a normalised batch ``input`` (N x C x H x W, N dynamic) to ``logits`` (N x labels);
prepare inputs with :func:`cxrinspect.model.preprocess` exactly as for PyTorch and apply a sigmoid
per label. The model card travels in the ONNX metadata (``cxrinspect.card``), so the file describes
itself like the safetensors one.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from .. import atomic
from .preprocess import normalise

log = logging.getLogger("cxrinspect")

OPSET = 18
INPUT, OUTPUT = "input", "logits"


def _write_graph(network, example, path: str, opset: int) -> str:
    """The TorchScript exporter (several times faster on DenseNet), the torch.export one where it fails."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), path, input_names=[INPUT], output_names=[OUTPUT], dynamo=False,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset)
        return "torchscript"
    except Exception as e:  # noqa: BLE001 - any exporter failure: try the other one
        log.warning("TorchScript ONNX export failed (%s: %s); using torch.export", type(e).__name__, str(e)[:200])
    torch.onnx.export(network, (example,), path, input_names=[INPUT], output_names=[OUTPUT], dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False, opset_version=opset)
    return "torch.export"


def export_onnx(model, path: str | Path, inputs=None, opset: int = OPSET) -> float:
    """Write ``model`` to ``path`` atomically and return max |onnxruntime - PyTorch| over its logits.

    ``inputs``: a preprocessed batch of real radiographs (N x C x H x W); without it a seeded random
    image batch is used. The check runs the whole batch and a single image (the batch axis is dynamic).
    A graph that fails ``onnx.checker`` is never written.
    """
    import onnx
    import torch

    spec = model.card.preprocessing
    if inputs is None:
        views = torch.rand(4, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
        inputs = normalise(views, spec)
    inputs = inputs.float()
    expected = (spec.channels, spec.input_size, spec.input_size)
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected:
        raise ValueError(f"inputs must be N x {' x '.join(map(str, expected))}, got {tuple(inputs.shape)}")
    network = model.network.float().cpu().eval()
    with torch.no_grad():
        reference = network(inputs).numpy()
    result = {}

    def write(tmp: str) -> None:
        example = inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, 1, 1, 1)
        exporter = _write_graph(network, example, tmp, opset)
        proto = onnx.load(tmp)
        del proto.metadata_props[:]
        for k, v in {"cxrinspect.card": model.card.to_json(), "cxrinspect.output": "logits; sigmoid per label",
                     "cxrinspect.exporter": exporter}.items():
            proto.metadata_props.add(key=k, value=v)
        proto.doc_string = f"{model.card.name or 'cxrinspect model'}: {', '.join(model.card.labels)}"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        session = onnx_session(tmp)
        result["diff"] = max(float(np.abs(session.run([OUTPUT], {INPUT: b.numpy()})[0] - reference[: len(b)]).max())
                             for b in (inputs, inputs[:1]))
        result["exporter"] = exporter

    atomic.replace(path, write, suffix=".onnx")
    log.info("exported %s (%s exporter, opset %d): max |onnxruntime - PyTorch| = %.3g over %d image(s)",
             path, result["exporter"], opset, result["diff"], len(inputs))
    return result["diff"]


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between runs: spinning workers would take the cores from a saliency map or scan that
    # PyTorch computes at the same time (the app does both), for no gain on batches this size.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
