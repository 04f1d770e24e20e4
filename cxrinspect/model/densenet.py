"""DenseNet classifiers (torchvision's implementation), built from the card's architecture entry."""

from __future__ import annotations

import torch.nn as nn
from torchvision.models import DenseNet

DENSENET121 = {"name": "densenet", "growth_rate": 32, "block_config": [6, 12, 24, 16],
               "num_init_features": 64, "bn_size": 4}


def build(architecture: dict, num_labels: int, in_channels: int = 3) -> DenseNet:
    """A DenseNet with ``num_labels`` logits (independent sigmoids are applied by the caller).

    ``architecture`` is the card's entry, e.g. :data:`DENSENET121`; smaller configurations of the
    same class (fewer or shorter blocks) serve tests.
    """
    arch = dict(architecture)
    name = arch.pop("name", None)
    if name != "densenet":
        raise ValueError(f"unsupported architecture {name!r} (expected 'densenet')")
    unknown = set(arch) - {"growth_rate", "block_config", "num_init_features", "bn_size"}
    if unknown:
        raise ValueError(f"unknown architecture field(s): {sorted(unknown)}")
    model = DenseNet(growth_rate=int(arch["growth_rate"]), block_config=tuple(arch["block_config"]),
                     num_init_features=int(arch["num_init_features"]), bn_size=int(arch.get("bn_size", 4)),
                     num_classes=num_labels)
    if in_channels != 3:
        old = model.features.conv0
        model.features.conv0 = nn.Conv2d(in_channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.features.conv0.weight)
    return model
