"""Class activation maps for every label from ONE forward pass.

For a DenseNet (global average pooling, then one linear layer) Grad-CAM on the post-ReLU last feature
map equals CAM: the gradient of logit c with respect to A_k is W[c, k] / (h * w) at every position, so

    cam_c = relu(sum_k W[c, k] * A_k) / (h * w)

(checked against captum's LayerGradCam in tests/saliency). One forward gives all labels' maps; they
are 7 x 7 for a 224-pixel input, an anatomical overview, too coarse to see a 3 x 3 trigger.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_maps(network: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The post-ReLU last feature maps A (N, K, h, w) of a torchvision DenseNet."""
    return F.relu(network.features(batch))


def class_activation_maps(network: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, L), CAMs (N, L, h, w)) for every label, from one forward pass, without gradients."""
    with torch.inference_mode():
        a = feature_maps(network, batch)
        logits = network.classifier(F.adaptive_avg_pool2d(a, 1).flatten(1))
        weight = network.classifier.weight  # (L, K)
        h, w = a.shape[-2:]
        cams = F.relu(torch.einsum("lk,nkhw->nlhw", weight, a)) / (h * w)
    return logits, cams
