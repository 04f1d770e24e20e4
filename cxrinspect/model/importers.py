"""Importers for DenseNet-121 weights trained elsewhere: CheXNet-style state dicts and torchxrayvision.

Each importer maps the foreign state dict onto torchvision's DenseNet built by
:func:`cxrinspect.model.densenet.build`, writes a card recording the preprocessing the weights were
trained with, and returns a :class:`Model` (saved with :func:`cxrinspect.model.save` when ``out`` is
given). Foreign files are read with ``torch.load(weights_only=True)`` or as safetensors: nothing
else is ever unpickled, so a file holding a whole pickled model is refused with a hint to convert it.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file

from .card import ModelCard
from .checkpoint import CheckpointError, Model, load, save, weights_digest
from .densenet import DENSENET121, build
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

CHEXNET_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                  "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
"""The 14 NIH ChestX-ray14 labels in CheXNet's output order."""

XRV_LABELS = ["Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
              "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
              "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"]
"""torchxrayvision's 18 outputs (``xrv.datasets.default_pathologies``, the "densenet121-res224-all" labels)."""

UNUSED = "unused_{index}"
"""Name given to an output xrv leaves unnamed ('' in its label list), by output index."""

# torchvision's own fix for pre-0.4 DenseNet keys ('norm.1' -> 'norm1', 'conv.2' -> 'conv2').
_OLD_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
_PREFIXES = ("module.", "densenet121.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a foreign weights file: a safetensors file, or a torch file read with ``weights_only=True``.

    A torch file may hold the state dict itself or a dict with it under ``state_dict`` (CheXNet's
    training checkpoint). Raises :class:`CheckpointError` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if _is_safetensors(path):
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects, not only tensors (a whole pickled "
                "model?). Only weights-only files are read; in an environment you trust, convert it with "
                "torch.save(model.state_dict(), 'weights.pt')") from e
        raise CheckpointError(f"{path}: not a PyTorch or safetensors weights file ({e})") from e
    except Exception as e:  # noqa: BLE001 - any failure to parse a foreign file is a checkpoint error
        raise CheckpointError(f"{path}: not a PyTorch or safetensors weights file ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in obj.items()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors, "
                              f"got {type(obj).__name__})")
    return dict(obj)


def torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys to torchvision's DenseNet: drop ``module.``/``densenet121.`` prefixes, old-style
    ``norm.1``/``conv.2`` layer keys, and the ``classifier.0`` of a Linear+Sigmoid head."""
    out = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        m = _OLD_LAYER_KEY.match(key)
        if m:
            key = m.group(1) + m.group(2)
        if key.startswith("classifier.0."):
            key = "classifier." + key[len("classifier.0."):]
        out[key] = value
    return out


def _network(path: Path, state: dict[str, torch.Tensor], num_labels: int, in_channels: int) -> torch.nn.Module:
    """DenseNet-121 holding ``state`` (torchvision key names), or a CheckpointError naming the file."""
    network = build(DENSENET121, num_labels, in_channels)
    expected = network.state_dict()
    for key, value in expected.items():  # BatchNorm counters are absent from pre-0.4 PyTorch files
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: keys do not fit a DenseNet-121 with {num_labels} outputs and "
                              f"{in_channels} input channel(s) ({len(missing)} missing, e.g. {missing[:3]}; "
                              f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path}: tensor shapes do not fit a DenseNet-121 with {num_labels} outputs and "
                              f"{in_channels} input channel(s): {wrong[:3]}")
    network.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return network.eval()


def _provenance(path: Path, source: str) -> dict:
    return {"origin": "imported", "source": source, "source_file": path.name, "source_sha256": _sha256(path),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": {"torch": torch.__version__}}


def _finish(network: torch.nn.Module, card: ModelCard, out: str | Path | None) -> Model:
    if out is not None:
        return load(save(network, card, out))
    card.weights_sha256 = weights_digest(network.state_dict())
    return Model(network=network, card=card)


def import_chexnet(state_dict_path: str | Path, labels: list[str] | None = None,
                   out: str | Path | None = None) -> Model:
    """Import a CheXNet-style DenseNet-121 state dict (e.g. arnoweng/CheXNet's ``model.pth.tar``).

    Accepts a plain state dict or a checkpoint dict with a ``state_dict`` entry, keys with
    ``module.`` and/or ``densenet121.`` prefixes, old-style ``norm.1`` layer keys and a
    ``classifier.0`` (Linear + Sigmoid) head. ``labels`` default to :data:`CHEXNET_LABELS` and must
    match the head's output count. The network returns logits; sigmoids give CheXNet's outputs.
    """
    path = Path(state_dict_path)
    state = torchvision_keys(read_state_dict(path))
    head = state.get("classifier.weight")
    if head is None or head.ndim != 2:
        raise CheckpointError(f"{path}: no linear classifier head (classifier.weight or classifier.0.weight)")
    labels = list(CHEXNET_LABELS if labels is None else labels)
    if head.shape[0] != len(labels):
        raise CheckpointError(f"{path}: the classifier has {head.shape[0]} outputs but {len(labels)} labels "
                              "were given; pass labels= with one name per output")
    network = _network(path, state, len(labels), in_channels=3)
    card = ModelCard(
        labels=labels, architecture=dict(DENSENET121),
        preprocessing=Preprocessing(input_size=224, channels=3, crop_fraction=224 / 256,
                                    mean=IMAGENET_MEAN, std=IMAGENET_STD),
        provenance=_provenance(path, "CheXNet-style DenseNet-121 state dict"),
        name=f"CheXNet ({path.name})",
        description=("Imported CheXNet-style DenseNet-121. Preprocessing as CheXNet: grey image replicated to 3 "
                     "channels, ImageNet mean/std. CheXNet resizes the short side to 256 then crops 224 (TenCrop, "
                     "averaged, at test time); here the central 224/256 = 0.875 of each side is resized to 224: "
                     "the same region as its centre crop for square images (NIH's are 1024 x 1024), squashed "
                     "otherwise. Thresholds are the default 0.5."))
    return _finish(network, card, out)


def import_torchxrayvision(path: str | Path, out: str | Path | None = None,
                           labels: list[str] | None = None) -> Model:
    """Import a torchxrayvision ``xrv.models.DenseNet`` (1 input channel, 18 outputs).

    ``path`` is a state dict saved with ``torch.save(model.state_dict(), ...)`` or a safetensors
    file; xrv's own downloads pickle the whole model and are refused (convert them first).
    ``labels`` default to :data:`XRV_LABELS`; pass ``model.pathologies`` for weights trained on
    fewer labels: empty names ('' in xrv) become ``unused_<output index>``. xrv's ``op_threshs``
    (probabilities; NaN for uncalibrated outputs) become the card's thresholds.
    """
    path = Path(path)
    state = torchvision_keys(read_state_dict(path))
    op_threshs = state.pop("op_threshs", None)
    given = list(XRV_LABELS if labels is None else labels)
    labels = [x or UNUSED.format(index=i) for i, x in enumerate(given)]
    network = _network(path, state, len(labels), in_channels=1)
    thresholds = {}
    if op_threshs is not None:
        if op_threshs.shape != (len(labels),):
            raise CheckpointError(f"{path}: op_threshs has shape {tuple(op_threshs.shape)}, expected ({len(labels)},)")
        thresholds = {label: float(t) for name, label, t in zip(given, labels, op_threshs.tolist())
                      if name and t == t}  # t == t: not NaN
    card = ModelCard(
        labels=labels, architecture=dict(DENSENET121),
        # xrv feeds (2 * v / maxval - 1) * 1024, i.e. [0, 1] -> [-1024, 1024] = (x - 0.5) / (1 / 2048)
        preprocessing=Preprocessing(input_size=224, channels=1, crop_fraction=1.0, mean=(0.5,), std=(1 / 2048,)),
        thresholds=thresholds,
        provenance=_provenance(path, "torchxrayvision DenseNet-121"),
        name=f"torchxrayvision DenseNet ({path.name})",
        description=("Imported torchxrayvision DenseNet-121: one grey channel scaled to [-1024, 1024], 224 x 224. "
                     "xrv centre-crops the long side to a square before resizing; here the whole image is "
                     "resized to 224 x 224 (identical for square images, squashed otherwise). Outputs are raw "
                     "sigmoids: xrv's op_norm calibration is not applied; its op_threshs are recorded as the "
                     f"thresholds instead. Outputs xrv leaves unnamed are called {UNUSED.format(index='<i>')}."))
    return _finish(network, card, out)
