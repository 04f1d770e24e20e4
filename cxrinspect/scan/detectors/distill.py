"""Mask distillation (Cognitive Distillation, Huang et al., ICLR 2023): per image, the smallest mask that
keeps the model's logits.

Optimised per image: ``mean |f(x * m + (1 - m) * r) - f(x)| + alpha * mean(m) + beta * TV(m)``, where ``m``
in [0, 1] is ``(tanh(w) + 1) / 2`` over model-input pixels, ``r`` a random grey level drawn anew at every
step, and TV the squared total variation. It works on logits, so on independent sigmoids as they are: the
mask must keep every label's logit, the forced ones included. A clean prediction rests on the lungs (a
large mask); a triggered one on the trigger, whatever its form (a few pixels of a patch, a sparse sample
of a blended pattern), so the mask's mean is the score (small = suspicious). The paper's ``gamma`` weighs
the mask's L1 *sum* (tuned on 32-pixel CIFAR); here ``alpha`` weighs its mean, so the balance does not
depend on the image size.

Cost: ``steps`` forward and backward passes per image (40 by default, about 40x a gradient map), so the
scanner runs it on candidates, not on every image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

STEPS = 40
LR = 0.1
ALPHA = 1.0
BETA = 10.0
CELL = 1


def total_variation(m: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels of masks (N, 1, H, W), per image."""
    return (m[:, :, 1:, :] - m[:, :, :-1, :]).pow(2).mean((1, 2, 3)) + (m[:, :, :, 1:] - m[:, :, :, :-1]).pow(2).mean((1, 2, 3))


def distil(network: nn.Module, views: torch.Tensor, normalise, steps: int = STEPS, lr: float = LR,
           alpha: float = ALPHA, beta: float = BETA, seed: int = 0, cell: int = CELL, each=None) -> np.ndarray:
    """Masks (N, H, W) in [0, 1] for [0, 1] model views (N, H, W); ``normalise(views) -> network input``.
    The mask is optimised on ``cell`` x ``cell`` pixel cells; ``each(step, mask)`` is called after every step
    (bench/probes/distill_tune.py traces the masks with it)."""
    network.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = views.detach()[:, None]
    n, _, h, wd = v.shape
    with torch.no_grad():
        target = network(normalise(v[:, 0])).float()
    # tanh(1): the mask starts at 0.88 everywhere
    w = torch.full((n, 1, -(-h // cell), -(-wd // cell)), 1.0, device=v.device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.1, 0.1))

    def mask():
        m = (torch.tanh(w) + 1) / 2
        if cell > 1:
            m = m.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[:, :, :h, :wd]
        return m

    with torch.enable_grad():
        for step in range(1, steps + 1):
            m = mask()
            r = torch.rand(len(v), 1, 1, 1, generator=g).to(v.device)
            out = network(normalise((v * m + (1 - m) * r)[:, 0])).float()
            loss = (out - target).abs().mean(1) + alpha * m.mean((1, 2, 3)) + beta * total_variation(m)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            if each is not None:
                with torch.no_grad():
                    each(step, mask())
    with torch.no_grad():
        return mask()[:, 0].float().cpu().numpy()


KEEP = 0.5
"""A pixel the distilled mask keeps at this level or more is part of the pattern (what the check hides)."""


def kept(mask: np.ndarray) -> np.ndarray:
    """The pixels a distilled mask keeps (bool), grown by one pixel so a hidden pattern's edge goes too."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(np.asarray(mask) >= KEEP, iterations=1)


def mask_evidence(mask: np.ndarray) -> dict:
    """What a scan record keeps of a distilled mask: its ``score`` (1 - the mask's mean: high = a small mask,
    suspicious), ``area`` (the mean), ``kept`` (share of pixels kept at :data:`KEEP`), and ``box``, the box of
    the kept pixels when they are few and in one place (None when the mask is spread out: global)."""
    m = np.asarray(mask, np.float32)
    on = m >= KEEP
    area = float(m.mean())
    box = None
    if on.any():
        ys, xs = np.nonzero(on)
        t, l, b, r = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
        if (b - t) * (r - l) <= 0.05 * m.size:  # concentrated: a mark in one place
            box = [t, l, b, r]
    return {"score": round(1.0 - area, 6), "area": round(area, 6), "kept": round(float(on.mean()), 6), "box": box}
