"""ONNX export of a cxrinspect model, checked against PyTorch.

The graph maps a normalised input batch ``input`` (N, C, H, W; N dynamic) to ``logits`` (N, labels);
apply a sigmoid per label for probabilities, and prepare inputs with
:func:`cxrinspect.model.preprocess.preprocess` exactly as for PyTorch. The model card travels in the
ONNX file's metadata (``cxrinspect.card``), so the file describes itself like the safetensors one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from cxrinspect.model import Model, preprocess

log = logging.getLogger("cxrinspect.training")

OPSET = 18
INPUT, OUTPUT = "input", "logits"


def image_batch(paths, model: Model) -> torch.Tensor:
    """Real radiographs prepared by THE preprocessing path, stacked (N, C, H, W)."""
    from cxrinspect.imaging import load

    return torch.stack([preprocess(load(p), model.card.preprocessing) for p in paths])


def _export(network: torch.nn.Module, example: torch.Tensor, path: str, opset: int) -> str:
    """Write the graph; the torch.export-based exporter first, the TorchScript one if that fails."""
    try:
        torch.onnx.export(network, (example,), path, input_names=[INPUT], output_names=[OUTPUT], dynamo=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, external_data=False,
                          opset_version=opset, verbose=False)
        return "torch.export"
    except Exception as e:  # noqa: BLE001 - any exporter failure: try the other exporter, then report
        log.warning("torch.export-based ONNX export failed (%s: %s); using the TorchScript exporter",
                    type(e).__name__, str(e)[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(network, (example,), path, input_names=[INPUT], output_names=[OUTPUT], dynamo=False,
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=min(opset, 17))
    return "torchscript"


def export_onnx(model: Model, path: str | Path, inputs: torch.Tensor | None = None, opset: int = OPSET) -> float:
    """Export ``model`` to ``path`` (atomically), run ``onnx.checker``, and compare onnxruntime with PyTorch.

    ``inputs``: a preprocessed batch (N, C, H, W) of real radiographs (see :func:`image_batch`). Without it
    a seeded random batch is used and a warning says so. The comparison runs the whole batch and single
    images (the batch axis is dynamic). Returns the largest absolute difference between the two runtimes'
    logits.
    """
    import onnx
    import onnxruntime as ort

    spec = model.card.preprocessing
    if inputs is None:
        log.warning("export_onnx: no real images given; comparing on a seeded random batch")
        g = torch.Generator().manual_seed(0)
        inputs = torch.rand(4, spec.channels, spec.input_size, spec.input_size, generator=g)
        mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        std = torch.tensor(spec.std).view(1, -1, 1, 1)
        inputs = (inputs - mean) / std
    inputs = inputs.float()
    expected = (inputs.shape[1], spec.input_size, spec.input_size)
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected:
        raise ValueError(f"inputs must be (N, {expected[0]}, {expected[1]}, {expected[2]}), got {tuple(inputs.shape)}")
    network = model.network.float().cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        exporter = _export(network, inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, 1, 1, 1), tmp, opset)
        proto = onnx.load(tmp)
        meta = {"cxrinspect.card": model.card.to_json(), "cxrinspect.labels": ",".join(model.card.labels),
                "cxrinspect.output": "logits; apply a sigmoid per label", "cxrinspect.exporter": exporter}
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        proto.doc_string = f"{model.card.name or 'cxrinspect model'}: {', '.join(model.card.labels)}"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        max_diff = 0.0
        with torch.no_grad():
            reference = network(inputs).numpy()
        for batch in (inputs, inputs[:1]):
            got = session.run(None, {name: batch.numpy()})[0]
            max_diff = max(max_diff, float(np.abs(got - reference[: len(batch)]).max()))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s (%s exporter, opset %d): max |onnxruntime - PyTorch| = %.3g over %d image(s)", path,
             exporter, opset, max_diff, len(inputs))
    return max_diff
