"""Importers of foreign DenseNet-121 weights: the imported model must reproduce the foreign one.

Each foreign model is built here with random weights (random affine BatchNorm parameters and
perturbed, data-calibrated running statistics, so a wrong mapping or normalisation shows), saved the
way its project saves it, imported, and run on a real radiograph: the foreign model on input prepared
its own way, ours through :func:`cxrinspect.model.preprocess`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from safetensors.torch import save_file

from cxrinspect.imaging.radiograph import Radiograph, Window
from cxrinspect.model import CheckpointError, load, preprocess
from cxrinspect.model.importers import (CHEXNET_LABELS, XRV_LABELS, import_chexnet, import_torchxrayvision,
                                        torchvision_keys)
from cxrinspect.model.preprocess import IMAGENET_MEAN, IMAGENET_STD

TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[2]


def _real_image() -> Path:
    fixtures = ROOT / "tests" / "fixtures"
    found = sorted(p for p in fixtures.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}) \
        if fixtures.is_dir() else []
    if not found:
        normal = ROOT.parent / "shared" / "data" / "kermany" / "NORMAL"
        found = sorted(normal.glob("*.jpeg")) if normal.is_dir() else []
    if not found:
        pytest.skip("no real radiograph: neither tests/fixtures/*.png|jpg nor ../shared/data/kermany/NORMAL")
    return found[0]


@pytest.fixture(scope="module")
def image():
    """(8-bit grey pixels as the foreign projects read them, our Radiograph of the same file)."""
    from PIL import Image

    path = _real_image()
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"))
    try:
        from cxrinspect.imaging import load as load_image
    except ImportError:
        load_image = None
    if load_image is not None:
        rg = load_image(path)
    else:
        rg = Radiograph(path=str(path), pixels=grey.astype(np.float32), window=Window.from_range(0, 255),
                        format=path.suffix.lstrip(".").lower())
    return grey, rg


def _pooled(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(F.relu(network.features(x)), 1).flatten(1)


@torch.no_grad()
def _randomise(network: nn.Module, classifier: nn.Linear, x: torch.Tensor, seed: int) -> None:
    """Random BN affine parameters and running statistics calibrated on ``x`` (then perturbed), and a
    random head scaled so that the probabilities spread around 0.5 instead of saturating."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.2, 0.2, generator=g)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    batch = torch.cat([x, x.flip(-1), x.flip(-2), x + 0.05 * x.std() * torch.randn(x.shape, generator=g)])
    network.train()
    _pooled(network, batch)
    network.eval()
    for bn in bns:
        bn.momentum = 0.1
        bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(bn.num_features, generator=g))
        bn.running_var.mul_(torch.empty(bn.num_features).uniform_(0.8, 1.25, generator=g))
    features = _pooled(network, batch)
    classifier.weight.normal_(0, 1, generator=g).div_(features.std() * classifier.in_features ** 0.5 / 2)
    classifier.bias.copy_(-(features.mean(0) @ classifier.weight.T))


def _check_spread(probabilities: torch.Tensor) -> None:
    """The comparison means something only if the outputs are not all saturated."""
    assert probabilities.min() < 0.45 and probabilities.max() > 0.55 and probabilities.std() > 0.05


@torch.no_grad()
def _ours(model, rg) -> torch.Tensor:
    return torch.sigmoid(model.network(preprocess(rg, model.card.preprocessing)[None]))[0]


# ---------------------------------------------------------------------------------------------- CheXNet

class CheXNet(nn.Module):
    """arnoweng/CheXNet's model: torchvision DenseNet-121 with a Linear + Sigmoid head."""

    def __init__(self, out_size: int = 14):
        super().__init__()
        from torchvision.models import densenet121

        self.densenet121 = densenet121(weights=None)
        self.densenet121.classifier = nn.Sequential(nn.Linear(1024, out_size), nn.Sigmoid())

    def forward(self, x):
        return self.densenet121(x)


def _chexnet_input(grey: np.ndarray) -> torch.Tensor:
    """CheXNet's own preparation (ToTensor, 3 channels, ImageNet normalisation), with our geometry:
    central crop of 224/256 of each side resized to 224 (antialiased bilinear)."""
    t = torch.from_numpy(grey.astype(np.float32) / 255.0)[None]
    h, w = t.shape[-2:]
    t = TF.center_crop(t, [round(h * 224 / 256), round(w * 224 / 256)])
    t = TF.resize(t, [224, 224], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.normalize(t.expand(3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)[None]


def _old_style(state: dict) -> dict:
    """Keys as a 2017 DataParallel CheXNet checkpoint has them: ``module.densenet121.`` prefix,
    ``norm.1``-style layer keys, no BatchNorm ``num_batches_tracked`` counters."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        key = re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)
        out["module." + key] = value.clone()
    return out


@pytest.fixture(scope="module")
def chexnet(image, tmp_path_factory):
    grey, _ = image
    torch.manual_seed(0)
    foreign = CheXNet()
    _randomise(foreign.densenet121, foreign.densenet121.classifier[0], _chexnet_input(grey), seed=1)
    path = tmp_path_factory.mktemp("chexnet") / "model.pth.tar"
    state = _old_style(foreign.state_dict())
    assert any(".norm.1." in k for k in state) and all(k.startswith("module.densenet121.") for k in state)
    # the legacy (pre-1.6, non-zip) serialisation, as the 2017 checkpoint
    torch.save({"epoch": 9, "arch": "densenet121", "state_dict": state, "best_loss": 0.1}, path,
               _use_new_zipfile_serialization=False)
    return foreign.eval(), path


@pytest.mark.shared_data
def test_chexnet_import_reproduces_chexnet(image, chexnet, tmp_path):
    grey, rg = image
    foreign, path = chexnet
    with torch.no_grad():
        theirs = foreign(_chexnet_input(grey))[0]
    _check_spread(theirs)

    model = import_chexnet(path)
    assert model.labels == CHEXNET_LABELS
    spec = model.card.preprocessing
    assert (spec.channels, spec.input_size, spec.crop_fraction) == (3, 224, 0.875)
    assert model.card.provenance["origin"] == "imported"
    assert model.card.provenance["source_file"] == "model.pth.tar"
    assert len(model.card.provenance["source_sha256"]) == 64
    diff = (_ours(model, rg) - theirs).abs().max().item()
    print(f"CheXNet import: max |difference| of probabilities = {diff:.3g}")
    assert diff < TOLERANCE

    saved = import_chexnet(path, out=tmp_path / "chexnet")
    reloaded = load(tmp_path / "chexnet")
    assert saved.path == str(tmp_path / "chexnet") and reloaded.card.to_dict() == saved.card.to_dict()
    assert (_ours(reloaded, rg) - theirs).abs().max().item() < TOLERANCE


def test_chexnet_label_count_must_match(tmp_path):
    path = tmp_path / "model.pth.tar"
    torch.save({"state_dict": _old_style(CheXNet().state_dict())}, path)
    with pytest.raises(CheckpointError, match=r"model\.pth\.tar.*14 outputs but 2 labels"):
        import_chexnet(path, labels=["a", "b"])


# ------------------------------------------------------------------------------------- torchxrayvision

def _xrv_input(grey: np.ndarray) -> torch.Tensor:
    """xrv's own preparation (``normalize(img, 255)`` to [-1024, 1024], one channel), with our
    geometry: the whole image resized to 224 x 224 (antialiased bilinear)."""
    xrv = pytest.importorskip("torchxrayvision")
    t = torch.from_numpy(xrv.datasets.normalize(grey, 255))[None]
    return TF.resize(t, [224, 224], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)[None]


@pytest.fixture(scope="module")
def xrv_model(image):
    xrv = pytest.importorskip("torchxrayvision")
    grey, _ = image
    torch.manual_seed(0)
    foreign = xrv.models.DenseNet(weights=None)  # 18 outputs, 1 channel, random init
    assert foreign.classifier.out_features == 18
    _randomise(foreign, foreign.classifier, _xrv_input(grey), seed=2)
    return foreign.eval()


@pytest.mark.shared_data
@pytest.mark.parametrize("layout", ["state_dict.pt", "weights.safetensors"])
def test_xrv_import_reproduces_xrv(image, xrv_model, tmp_path, layout):
    grey, rg = image
    with torch.no_grad():
        theirs = torch.sigmoid(xrv_model(_xrv_input(grey)))[0]  # raw sigmoids, no op_norm
    _check_spread(theirs)

    state = {k: v.clone() for k, v in xrv_model.state_dict().items()}
    threshs = torch.full((18,), float("nan"))
    threshs[:14] = torch.linspace(0.01, 0.2, 14)
    state["op_threshs"] = threshs  # as in xrv's pretrained models: a buffer, NaN where uncalibrated
    path = tmp_path / layout
    if layout.endswith(".safetensors"):
        save_file(state, path)
    else:
        torch.save(state, path)

    labels = XRV_LABELS[:14] + ["", "", "", ""]  # e.g. "densenet121-res224-nih"
    model = import_torchxrayvision(path, out=tmp_path / "xrv.safetensors", labels=labels)
    assert model.labels == XRV_LABELS[:14] + ["unused_14", "unused_15", "unused_16", "unused_17"]
    assert model.card.thresholds["Hernia"] == pytest.approx(0.2)
    assert model.card.thresholds["unused_15"] == 0.5  # the card's default
    spec = model.card.preprocessing
    assert (spec.channels, spec.input_size, spec.crop_fraction, spec.mean) == (1, 224, 1.0, (0.5,))
    assert spec.std[0] * 2048 == pytest.approx(1.0)
    assert model.card.provenance["source_file"] == layout

    diff = (_ours(model, rg) - theirs).abs().max().item()
    print(f"torchxrayvision import ({layout}): max |difference| of probabilities = {diff:.3g}")
    assert diff < TOLERANCE


def test_xrv_default_labels(tmp_path):
    xrv = pytest.importorskip("torchxrayvision")
    path = tmp_path / "xrv.pt"
    torch.save(xrv.models.DenseNet(weights=None).state_dict(), path)
    model = import_torchxrayvision(path)
    assert model.labels == XRV_LABELS and set(model.card.thresholds.values()) == {0.5}
    assert model.card.weights_sha256


# ------------------------------------------------------------------------------------ refusals

def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    for importer in (import_chexnet, import_torchxrayvision):
        with pytest.raises(CheckpointError, match="garbage.pt"):
            importer(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt: no such file"):
        import_chexnet(tmp_path / "nothere.pt")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(CheckpointError, match="list.pt: not a state dict"):
        import_chexnet(path)


def test_wrong_shapes_are_refused(tmp_path):
    from torchvision.models import densenet121

    state = densenet121(weights=None, num_classes=14).state_dict()
    state["features.conv0.weight"] = torch.zeros(64, 1, 7, 7)  # a one-channel stem
    path = tmp_path / "wrong_shape.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong_shape\.pt: tensor shapes.*features\.conv0\.weight"):
        import_chexnet(path)
    with pytest.raises(CheckpointError, match=r"wrong_shape\.pt: tensor shapes.*classifier\.weight \(14, 1024\)"):
        import_torchxrayvision(path)  # xrv has 18 outputs


def test_wrong_keys_are_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(14, 2048)}, path)
    with pytest.raises(CheckpointError, match=r"resnet\.pt: no linear classifier head"):
        import_chexnet(path)
    with pytest.raises(CheckpointError, match=r"resnet\.pt: keys do not fit a DenseNet-121"):
        import_torchxrayvision(path)


def _touch(path):
    Path(path).write_text("unpickled!")


class Payload:
    """Unpickling this runs code: what ``weights_only=True`` exists to refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


def test_pickled_objects_are_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"features.conv0.weight": torch.zeros(1)}, "payload": Payload(marker)}, path)
    for importer in (import_chexnet, import_torchxrayvision):
        with pytest.raises(CheckpointError, match=r"evil\.pth\.tar: refused"):
            importer(path)
    assert not marker.exists()


def test_torchvision_keys():
    state = {"module.densenet121.features.denseblock1.denselayer1.norm.1.weight": 1,
             "densenet121.features.denseblock4.denselayer16.conv.2.weight": 2,
             "module.features.transition1.norm.weight": 3,
             "module.densenet121.classifier.0.bias": 4,
             "features.norm5.running_var": 5}
    assert torchvision_keys(state) == {"features.denseblock1.denselayer1.norm1.weight": 1,
                                       "features.denseblock4.denselayer16.conv2.weight": 2,
                                       "features.transition1.norm.weight": 3,
                                       "classifier.bias": 4,
                                       "features.norm5.running_var": 5}
