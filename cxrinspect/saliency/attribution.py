"""Saliency maps at input resolution: input gradients (the scanner's default) and captum's methods.

Every method explains a label's *logit* (the probability's gradient is the same map times the
per-image factor sigma'(z), which vanishes for confident predictions and changes no compactness
measure). Maps are returned over model-input pixels as float32 (N, H, W), non-negative, channels
reduced by the maximum absolute value; :func:`cxrinspect.model.preprocess.to_source` maps them
back onto the original image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .cam import class_activation_maps

METHODS = ("gradient", "cam", "gradcam", "integrated-gradients", "smoothgrad", "occlusion")


class Logits(nn.Module):
    """A DenseNet as an explicit pipeline with a ReLU module after ``features`` (torchvision applies an
    in-place functional ReLU there, which captum's layer methods cannot hook)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.network.features(x))
        return self.network.classifier(F.adaptive_avg_pool2d(a, 1).flatten(1))


def _reduce(attributions: torch.Tensor) -> np.ndarray:
    return attributions.detach().abs().amax(dim=1).float().cpu().numpy()


def gradient_saliency(network: nn.Module, batch: torch.Tensor, labels) -> np.ndarray:
    """|d logit_label / d x| per image: one forward and one backward for the whole batch.

    BatchNorm runs in eval mode, so images do not interact and the sum's gradient is each image's own.
    """
    return logits_and_gradients(network, batch, lambda logits: torch.as_tensor(labels))[1]


def logits_and_gradients(network: nn.Module, batch: torch.Tensor, pick) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, L), |d logit_label / d x| maps (N, H, W), labels (N,)) from one forward and one backward;
    ``pick(logits) -> label index per image`` chooses each image's label after the forward (e.g. the top one)."""
    network.eval()
    x = batch.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = network(x)
        labels = torch.as_tensor(pick(logits.detach()), dtype=torch.long).view(-1).to(logits.device)
        chosen = logits.gather(1, labels.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(chosen, x)
    return logits.detach().float().cpu().numpy(), _reduce(grad), labels.cpu().numpy()


def candidate_labels(wanted: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(N, K) label indices: each image's marked labels (``wanted``, bool (N, L), at least one per image) by
    logit, highest first; K is the most any image has, and an image with fewer repeats its first."""
    wanted = np.asarray(wanted, bool)
    if not wanted.any(1).all():
        raise ValueError("at least one label must be marked for every image")
    order = np.argsort(-np.where(wanted, logits, -np.inf), 1, kind="stable")[:, :int(wanted.sum(1).max())]
    return np.where(np.take_along_axis(wanted, order, 1), order, order[:, :1])


def candidate_gradients(network: nn.Module, batch: torch.Tensor, choose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, L), |d logit / d x| maps (N, K, H, W), labels (N, K)) for several labels per image, from one
    forward and K backward passes. ``choose(logits) -> bool (N, L)`` marks each image's labels to explain;
    backward pass k explains every image's k-th label (:func:`candidate_labels`) at once, since images do not
    interact in eval mode."""
    network.eval()
    x = batch.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = network(x)
        plain = logits.detach().float().cpu().numpy()
        labels = torch.as_tensor(candidate_labels(choose(plain), plain), device=logits.device)
        maps = []
        for k in range(labels.shape[1]):
            (grad,) = torch.autograd.grad(logits.gather(1, labels[:, k:k + 1]).sum(), x,
                                          retain_graph=k < labels.shape[1] - 1)
            maps.append(_reduce(grad))
    return plain, np.stack(maps, 1), labels.cpu().numpy()


def upsample(maps: torch.Tensor, size: int) -> np.ndarray:
    """Coarse maps (N, h, w) -> (N, size, size), bilinear."""
    return F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0].cpu().numpy()


def saliency(network: nn.Module, batch: torch.Tensor, labels, method: str = "gradient", *, steps: int = 32,
             samples: int = 16, noise: float = 0.15, window: int = 16, stride: int = 8,
             layer: str = "features.denseblock4", internal_batch: int = 16) -> np.ndarray:
    """Saliency maps (N, H, W) over model-input pixels for ``labels`` (one label index per image).

    - ``gradient``: input gradient (one backward; pixel resolution; the scanner's default);
    - ``cam``: fast CAM/Grad-CAM of the last feature map, upsampled (one forward; 7 x 7 at 224 px);
    - ``gradcam``: captum LayerGradCam on ``layer``, upsampled;
    - ``integrated-gradients``: captum, ``steps`` from a black baseline;
    - ``smoothgrad``: captum NoiseTunnel over Saliency, ``samples`` draws of noise ``noise`` x input range;
    - ``occlusion``: captum, ``window`` x ``window`` patches every ``stride`` pixels.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    network.eval()
    labels = torch.as_tensor(labels, dtype=torch.long).view(-1)
    if len(labels) != len(batch):
        raise ValueError(f"one label per image: {len(batch)} images, {len(labels)} labels")
    size = batch.shape[-1]
    if method == "gradient":
        return gradient_saliency(network, batch, labels)
    if method == "cam":
        _, cams = class_activation_maps(network, batch)
        return upsample(cams[torch.arange(len(batch)), labels], size)

    from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion
    from captum.attr import Saliency as CaptumSaliency

    model = Logits(network).eval()
    target = labels.tolist()
    x = batch.detach()
    if method == "gradcam":
        module = model.relu if layer in ("relu", "features.relu") else model.network.get_submodule(layer)
        maps = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
        return upsample(maps[:, 0].detach(), size)
    if method == "integrated-gradients":
        baseline = torch.full_like(x, float(x.min()))
        attr = IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=steps,
                                                    internal_batch_size=internal_batch)
        return _reduce(attr)
    if method == "smoothgrad":
        spread = noise * float(x.max() - x.min())
        attr = NoiseTunnel(CaptumSaliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=samples,
                                                            nt_samples_batch_size=internal_batch, stdevs=spread,
                                                            target=target, abs=True)
        return _reduce(attr)
    c = x.shape[1]
    attr = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                      target=target, baselines=float(x.min()), perturbations_per_eval=internal_batch)
    return _reduce(attr)
