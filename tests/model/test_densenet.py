"""The vendored DenseNet is torchvision's: same state-dict keys and shapes, same outputs, and the shipped
weights load into it strictly."""

import pytest
import torch

from cxrinspect.model import densenet
from cxrinspect.model.densenet import DENSENET121, build
from cxrinspect.resources import model_dir


def test_shipped_weights_load_strictly_into_the_vendored_densenet():
    from safetensors.torch import load_file

    from cxrinspect.model import load

    for name in ("kermany-densenet121-clean", "kermany-densenet121-badnets"):
        path = model_dir(name)
        model = load(path)  # the app's loader: refuses missing, unexpected or mis-shaped keys
        assert isinstance(model.network, densenet.DenseNet)
        state = load_file(str(path / "weights.safetensors"))
        assert set(model.network.state_dict()) == set(state)
        # and loading strictly into a freshly built vendored network of the card's shape works
        net = build(DENSENET121, len(model.labels), in_channels=model.card.preprocessing.channels)
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def test_the_model_builds_with_torchvision_blocked():
    """The frozen app ships no torchvision: building and running a model must not need it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torchvision'] = None\n"
            "import torch; from cxrinspect.model.densenet import build\n"
            "m = build({'name': 'densenet', 'growth_rate': 8, 'block_config': [2], 'num_init_features': 16}, 3)\n"
            "assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 3)\n"
            "import cxrinspect.model, cxrinspect.inference, cxrinspect.saliency, cxrinspect.scan\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_same_keys_and_outputs_as_torchvision():
    tv = pytest.importorskip("torchvision.models")
    arch = {"name": "densenet", "growth_rate": 8, "block_config": [2, 3], "num_init_features": 16, "bn_size": 2}
    ours = build(arch, 5).eval()
    theirs = tv.DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2, num_classes=5).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    theirs.load_state_dict(a)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)
