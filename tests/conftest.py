"""Shared fixtures: the committed real fixtures, the optional ../shared/data, and a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data beside the checkout
SHARED_DATA_REASON = "needs ../shared/data (real radiographs beside the checkout)"

TINY_ARCH = {"name": "densenet", "growth_rate": 8, "block_config": [1, 1], "num_init_features": 16, "bn_size": 2}


def pytest_collection_modifyitems(items):
    """Tests that ask for ``shared_data`` carry the ``shared_data`` marker, so ``-m 'not shared_data'`` works."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: small real images committed with the code (see tests/fixtures/build.py)."""
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the full-size real radiographs; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(SHARED_DATA_REASON)
    return SHARED_DATA


def make_tiny_model(labels=("Pneumonia", "Bacterial", "Viral"), input_size=32, channels=1, seed=0):
    """A small DenseNet (same class as DenseNet-121, two short blocks) with random weights and a card."""
    import torch

    from cxrinspect.model import ModelCard, Model, Preprocessing, build

    torch.manual_seed(seed)
    spec = Preprocessing(input_size=input_size, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)
    network = build(TINY_ARCH, len(labels), channels).eval()
    for m in network.modules():  # non-trivial batch-norm statistics so eval mode differs from identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    card = ModelCard(labels=list(labels), architecture=dict(TINY_ARCH), preprocessing=spec,
                     name="tiny-test", provenance={"data": "random initialisation (tests)"})
    return Model(network=network, card=card)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_model) -> Path:
    from cxrinspect.model import save

    return save(tiny_model.network, tiny_model.card, tmp_path / "tiny-model")


@pytest.fixture
def block_folder(monkeypatch):
    """Make one folder unreadable. We run as root, so chmod would not stop reading: os.scandir fails instead."""
    import os

    def block(path) -> str:
        blocked = str(path)
        real_scandir = os.scandir

        def scandir(p="."):
            if os.fspath(p) == blocked:
                raise PermissionError(13, "Permission denied", blocked)
            return real_scandir(p)

        monkeypatch.setattr(os, "scandir", scandir)
        return blocked

    return block

