"""Scaled-parameter consistency (IBD-PSC, Hou et al., ICML 2024), adapted to multi-label sigmoid outputs.

A backdoor is a shortcut the network takes with unusual confidence: amplify the scale and shift of its last
BatchNorm layers and a clean image's prediction falls apart, while a triggered image keeps the label vector
its trigger forces. Per image, with ``n`` amplified copies of the network (the last ``start``, ``start + 1``,
..., ``start + n - 1`` BatchNorm layers' weight and bias times ``scale``), the score rests on the amplified
network's margin in the ORIGINAL decision of each label: its logit over the label's threshold for a label the
model called positive (at the card's threshold), the negated one for a label it called negative; the score is
the weakest label's margin, averaged over the copies (:meth:`ScaledConsistency.scores`). The paper's softmax
version takes the probability of the original top class; with independent sigmoids a backdoor forces a vector
of decisions (some on, some off), so every label's decision counts, and no label needs to be positive.

``start`` is calibrated as in the paper, without labels: the fewest amplified layers at which more than
``xi`` (0.6) of a sample of the scanned images change their decision vector (the paper counts errors against
labels on a clean validation set; a scan has no labels, and at most a minority of a folder is triggered).
It is found by bisection (a handful of forward passes over the sample). Cost per image: ``n`` forward passes
(3 by default; the paper's 5 gave the same ranking on the zoo, bench/results).

The score is unbounded (log-odds) and its scale differs from model to model, so the scan reads it against
the scanned folder (robust z, :func:`cxrinspect.scan.run.combine`) to rank, and never flags an image on it
alone (:func:`cxrinspect.scan.run.flagged` says what was measured).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

SCALE = 1.5
XI = 0.6
COPIES = 3


class ScaledConsistency:
    """``ScaledConsistency(network, thresholds)``; ``calibrate(sample)``; ``scores(batch)`` -> (N,)."""

    def __init__(self, network: nn.Module, thresholds: np.ndarray, scale: float = SCALE, copies: int = COPIES,
                 xi: float = XI):
        self.network = network
        self.amplified = copy.deepcopy(network).eval()
        self.norms = [m for m in self.amplified.modules() if isinstance(m, nn.BatchNorm2d)][::-1]  # last first
        if not self.norms:
            raise ValueError("scaled-parameter consistency needs a network with BatchNorm layers")
        self._original = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in self.norms]
        self.thresholds = np.asarray(thresholds, np.float32)
        self.logit_thresholds = torch.as_tensor(np.log(thresholds) - np.log1p(-np.asarray(thresholds)),
                                                dtype=torch.float32)
        self.scale, self.copies, self.xi = float(scale), int(copies), float(xi)
        self.start: int | None = None

    def _amplify(self, k: int) -> None:
        """Scale the last ``k`` BatchNorm layers (the others as they were)."""
        with torch.no_grad():
            for i, (m, (w, b)) in enumerate(zip(self.norms, self._original)):
                f = self.scale if i < k else 1.0
                m.weight.copy_(w * f)
                m.bias.copy_(b * f)

    @torch.inference_mode()
    def calibrate(self, sample: torch.Tensor) -> int:
        """Find ``start`` on a sample of normalised inputs (N, C, H, W) from the scanned folder."""
        thr = self.logit_thresholds.to(sample.device)
        decision = self.network(sample).float() >= thr

        def changed(k: int) -> float:
            self._amplify(k)
            return float(((self.amplified(sample).float() >= thr) != decision).any(1).float().mean())

        lo, hi = 1, len(self.norms) - self.copies + 1
        if changed(hi) <= self.xi:  # even the most amplification leaves most decisions: take the most
            self.start = hi
        else:
            while lo < hi:
                mid = (lo + hi) // 2
                if changed(mid) > self.xi:
                    hi = mid
                else:
                    lo = mid + 1
            self.start = lo
        self._amplify(0)
        return self.start

    @torch.inference_mode()
    def margins(self, batch: torch.Tensor, probabilities: np.ndarray | None = None) -> torch.Tensor:
        """(N, copies, L) log-odds by which each amplified copy keeps each label's ORIGINAL decision on a normalised
        batch (N, C, H, W): its logit over the label's threshold, negated for a label called negative
        (> 0 = kept). ``probabilities``: the network's own on ``batch`` when already computed (saves a forward)."""
        if self.start is None:
            raise RuntimeError("calibrate() first")
        thr = self.logit_thresholds.to(batch.device)
        if probabilities is None:
            decision = self.network(batch).float() >= thr
        else:
            decision = torch.as_tensor(np.asarray(probabilities) >= self.thresholds, device=batch.device)
        out = []
        for k in range(self.start, self.start + self.copies):
            self._amplify(k)
            z = self.amplified(batch).float() - thr  # 0 at the label's own threshold
            out.append(torch.where(decision, z, -z))
        self._amplify(0)
        return torch.stack(out, 1)

    def scores(self, batch: torch.Tensor, probabilities: np.ndarray | None = None) -> np.ndarray:
        """PSC per image of a normalised batch (N, C, H, W), in log-odds, high = keeps its decisions: the
        margin by which the amplified copies keep, on average, the decision of the label they hold least
        firmly (:meth:`margins` averaged over the copies, the weakest label). The paper's probability (here
        the mean sigmoid of the margins) saturates: on the zoo's letter backdoor 26% of clean images scored
        exactly 1.0 with it, tied with the triggered ones; the weakest label's margin does not (AUROC 0.947
        against 0.920 there, bench/probes/psc_margin.py), and a clean image usually loses one decision even
        when it keeps the others."""
        return self.margins(batch, probabilities).mean(1).min(1).values.cpu().numpy()
