"""Trigger inversion for one candidate (a label driven on, or off): Neural Cleanse for sigmoid outputs.

Neural Cleanse (Wang et al. 2019) looks, per target, for the smallest mask ``m`` and a pattern ``p`` that
turn clean images ``x`` into the target when stamped, ``x' = (1 - m) x + m p``. A backdoor is a shortcut: its
target needs a tiny mask (the trigger's few pixels), a real finding needs a big one (the opacity of a whole
lung). Here a candidate is one label and a direction, because a backdoor of a multi-label model forces a label
vector, not a class: the attack loss is the binary cross-entropy of that label's logit toward 1 (on) or 0 (off)
over clean images the model calls the other way.

    loss = BCE(z_label(x'), target) + cost * |m|_1          (|m|_1 in model-input pixels)

``m = sigmoid(upsampled mask logits)`` (the mask may live on a coarser grid than the input, upsampled
bilinearly), ``p = sigmoid(pattern logits)``, both in the [0, 1] model view. The cost adapts as Neural Cleanse
does: it starts at :data:`INIT_COST` (from the first step: measured on the shipped BadNets model, a cost held
at 0 until the first success let the veil grow to 3400 pixels in 25 steps, more steps than this CPU affords), goes up by :data:`COST_UP` after :data:`PATIENCE` steps in a row at or above the line,
down by :data:`COST_DOWN` after as many below it; while the cost is under :data:`INIT_COST` (it decayed
during a long miss) every step at the line multiplies it by ``COST_UP ** PATIENCE``, capped at INIT_COST
(measured on the shipped BadNets model: the cost had decayed to 1.2e-6 when Viral:on first succeeded with a
2900-pixel veil, and the patience rule would need about 50 more steps to bring it back). The smallest mask seen while at or above the line is kept.

The state is plain tensors and numbers (Adam written out here for that reason), so a candidate can be saved
to safetensors and resumed exactly. :class:`GlobalInversion` is the non-patch counterpart: a bounded additive
perturbation over the whole image for blended and signal triggers a small mask cannot express.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model.preprocess import normalise

SUCCESS = 0.9
"""Attack success line: a stamped image counts when the label's probability reaches 0.9 (on), or falls to 0.1
(off); the seed paper's attack-success threshold."""
INIT_COST = 1e-3
"""Cost per mask pixel at the start (Neural Cleanse's init_cost)."""
COST_UP, COST_DOWN, PATIENCE = 1.5, 1.5 ** 1.5, 3
"""Neural Cleanse's multipliers; its patience (5 epochs) shrunk to 3 steps, since a candidate here gets tens
of steps, not epochs."""
LR, BETAS = 0.1, (0.5, 0.9)
"""Adam as Neural Cleanse sets it."""
MASK_INIT = -3.0
"""Initial mask logit: sigmoid(-3) = 0.047 everywhere, a faint veil the attack loss then concentrates."""


@dataclass(frozen=True)
class Candidate:
    label: str
    index: int
    direction: str = "on"  # "on": drive the label to 1; "off": to 0

    @property
    def name(self) -> str:
        return f"{self.label}:{self.direction}"

    @property
    def target(self) -> float:
        return 1.0 if self.direction == "on" else 0.0

    def eligible(self, probabilities: np.ndarray) -> np.ndarray:
        """Which clean images can show the attack: the model calls the label the other way."""
        p = probabilities[:, self.index]
        return p < 0.5 if self.direction == "on" else p >= 0.5

    def succeeded(self, p: torch.Tensor | np.ndarray):
        """Per image: the label's probability is across the success line."""
        return p >= SUCCESS if self.direction == "on" else p <= 1.0 - SUCCESS


def _adam(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int,
          betas: tuple[float, float] = BETAS) -> None:
    b1, b2 = betas
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    mhat, vhat = m / (1 - b1 ** step), v / (1 - b2 ** step)
    param.sub_(LR * mhat / (vhat.sqrt() + 1e-8))


@dataclass
class PatchInversion:
    """One candidate's Neural Cleanse state: mask and pattern logits, their Adam moments, the adaptive cost,
    the smallest successful mask so far, and a short history of what each step saw."""

    candidate: Candidate
    size: int
    grid: int
    mask_logits: torch.Tensor = None
    pattern_logits: torch.Tensor = None
    moments: dict = field(default_factory=dict)
    cost: float = INIT_COST
    above: int = 0  # consecutive steps at or above the line
    below: int = 0
    steps: int = 0
    best_l1: float = math.inf  # pixels
    best_mask: torch.Tensor = None
    best_pattern: torch.Tensor = None
    best_step: int = -1
    history: list = field(default_factory=list)  # [step, batch success, attack loss, mask l1, cost]

    def __post_init__(self):
        if self.mask_logits is None:
            self.mask_logits = torch.full((1, 1, self.grid, self.grid), MASK_INIT)
            self.pattern_logits = torch.zeros((1, 1, self.size, self.size))
            self.moments = {k: torch.zeros_like(t) for k, t in
                            (("mask_m", self.mask_logits), ("mask_v", self.mask_logits),
                             ("pattern_m", self.pattern_logits), ("pattern_v", self.pattern_logits))}

    # ------------------------------------------------------------------ the trigger
    def mask(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 1, size, size) in [0, 1]."""
        logits = self.mask_logits if logits is None else logits
        if logits.shape[-1] != self.size:
            logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)

    def pattern(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.pattern_logits if logits is None else logits)

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """The smallest successful mask and its pattern (size x size, [0, 1]); the current ones if none succeeded."""
        with torch.no_grad():
            if self.best_mask is None:
                return self.mask()[0, 0].numpy(), self.pattern()[0, 0].numpy()
            return self.mask(self.best_mask)[0, 0].numpy(), self.pattern(self.best_pattern)[0, 0].numpy()

    @property
    def reached(self) -> bool:
        return self.best_mask is not None

    # ------------------------------------------------------------------ one step
    def step(self, network, views: torch.Tensor, spec) -> dict:
        """One Adam step on a mini-batch of [0, 1] model views (B, S, S)."""
        c = self.candidate
        mask_logits = self.mask_logits.clone().requires_grad_(True)
        pattern_logits = self.pattern_logits.clone().requires_grad_(True)
        m, p = self.mask(mask_logits), self.pattern(pattern_logits)
        stamped = (1 - m[:, 0]) * views + m[:, 0] * p[:, 0]
        z = network(normalise(stamped, spec))[:, c.index]
        attack = F.binary_cross_entropy_with_logits(z, torch.full_like(z, c.target))
        l1 = m.sum()
        loss = attack + self.cost * l1
        loss.backward()
        self.steps += 1
        with torch.no_grad():
            _adam(self.mask_logits, mask_logits.grad, self.moments["mask_m"], self.moments["mask_v"], self.steps)
            _adam(self.pattern_logits, pattern_logits.grad, self.moments["pattern_m"], self.moments["pattern_v"],
                  self.steps)
            success = float(c.succeeded(torch.sigmoid(z)).float().mean())
        line = math.floor(SUCCESS * len(z) + 1e-9) / len(z)  # a mini-batch of 8 may miss one image (7/8 = 0.875)
        l1_value = float(l1.detach())
        if success >= line and l1_value < self.best_l1:  # the mask that was stamped, before the update
            self.best_l1, self.best_step = l1_value, self.steps
            self.best_mask, self.best_pattern = mask_logits.detach().clone(), pattern_logits.detach().clone()
        self._adapt(success >= line)
        record = [self.steps, round(success, 4), round(float(attack.detach()), 5), round(l1_value, 2), self.cost]
        self.history.append(record)
        return {"success": success, "attack": float(attack.detach()), "l1": l1_value}

    def _adapt(self, at_line: bool) -> None:
        if at_line:
            self.above, self.below = self.above + 1, 0
        else:
            self.above, self.below = 0, self.below + 1
        if at_line and self.cost < INIT_COST:  # back at the line after a long miss: re-arm quickly
            self.cost = min(self.cost * COST_UP ** PATIENCE, INIT_COST)
            self.above = 0
        elif self.above >= PATIENCE:
            self.cost *= COST_UP
            self.above = 0
        elif self.below >= PATIENCE:
            self.cost /= COST_DOWN
            self.below = 0

    # ------------------------------------------------------------------ saving
    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.mask_logits": self.mask_logits, f"{prefix}.pattern_logits": self.pattern_logits,
               **{f"{prefix}.{k}": v for k, v in self.moments.items()}}
        if self.best_mask is not None:
            out[f"{prefix}.best_mask"], out[f"{prefix}.best_pattern"] = self.best_mask, self.best_pattern
        return {k: v.contiguous() for k, v in out.items()}

    def scalars(self) -> dict:
        return {"cost": self.cost, "above": self.above, "below": self.below, "steps": self.steps,
                "best_l1": None if math.isinf(self.best_l1) else self.best_l1, "best_step": self.best_step,
                "history": self.history}

    @classmethod
    def restore(cls, candidate: Candidate, size: int, grid: int, scalars: dict, tensors: dict, prefix: str):
        t = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        inv = cls(candidate, size, grid, mask_logits=t["mask_logits"], pattern_logits=t["pattern_logits"],
                  moments={k: t[k] for k in ("mask_m", "mask_v", "pattern_m", "pattern_v")})
        inv.best_mask, inv.best_pattern = t.get("best_mask"), t.get("best_pattern")
        inv.cost, inv.above, inv.below, inv.steps = scalars["cost"], scalars["above"], scalars["below"], scalars["steps"]
        inv.best_l1 = math.inf if scalars["best_l1"] is None else scalars["best_l1"]
        inv.best_step, inv.history = scalars["best_step"], [list(h) for h in scalars["history"]]
        return inv


def stamp_views(views: np.ndarray | torch.Tensor, mask: np.ndarray, pattern: np.ndarray) -> torch.Tensor:
    """``(1 - m) x + m p`` for [0, 1] model views (N, S, S)."""
    x = torch.as_tensor(views)
    m, p = torch.as_tensor(mask), torch.as_tensor(pattern)
    return (1 - m) * x + m * p


def mask_core(mask: np.ndarray) -> np.ndarray:
    """The pixels where the mask stamps its pattern: at or above 0.5; where no pixel reaches it (a faint
    mask, as zoo-normal's "off" candidates were: L1 50 px, strongest pixel 0.37 to 0.46), at or above half its
    strongest pixel."""
    on = mask >= 0.5
    return on if on.any() else mask >= mask.max() / 2


def mask_box(mask: np.ndarray) -> tuple[list[int], int]:
    """The (top, left, bottom, right) box, half-open in model-input pixels, of the mask's core
    (:func:`mask_core`), and how many pixels the core has."""
    ys, xs = np.nonzero(mask_core(mask))
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1], len(ys)


# ---------------------------------------------------------------------------------------------- global
GLOBAL_EPSILON = 0.1
"""Largest change per pixel (presentation units, of 1) the whole-image perturbation may make: a blended trigger
at opacity 0.1 moves pixels by at most this much, zoo-sig's sinusoid (amplitude 0.08) by less. At 0.06 and 12
steps no zoo model's target was forced on more than 34% of held-out images (bench/results/README.md, "Model
audit")."""
GLOBAL_STEPS = 25
"""Steps of :data:`BATCH`-image mini-batches per candidate (bench/probes/structured_inversion.py used 25). What the
whole-image line reads is how easily a label is forced, the share reached within this fixed effort, not whether it
can be: with 75 steps the change forced Bacterial on 95 to 98% of the calm films of two clean models (zoo-clean-ft3
on the 499 test films, zoo-clean-ft2 on the 475 validation films; 63% and 50% with 25 steps), so the
lines of :data:`.anomaly.WHOLE_IMAGE_LINES` hold for 25 steps only (bench/results/README.md, "Model audit",
seventeenth session)."""
GLOBAL_RESTARTS = 3
"""Independent runs of the whole-image inversion per candidate (each its own mini-batch stream); the candidate's
share is their mean. One run's share is noisy: zoo-clean-ft1's Bacterial share over the calm films of the first 200
test films was 0.54, 0.68 and 0.26 with three seeds (bench/results/README.md, "Model audit", seventeenth session),
wider than the gap to the SIG models' 0.85 to 0.97. Three runs cost three times the stage's time."""
GLOBAL_SCALE = 0.75
"""The whole-image line reads the share of calm held-out films forced by each run's change made this much smaller
(``reduced_success``), not at the size it was found at. A learned trigger keeps working a little under the bound
where a clean model's push, found at the bound, fades: on the first 200 test films (bench/probes/whole_consistency.py,
the best of three runs) the SIG models' changes at three quarters still forced Bacterial on 60% and 66% of calm
films and zoo-blend's forced Viral on 86%, while the three first clean models' forced Bacterial on 7 to 19% and Viral
on 3 to 7%, and zoo-faint (a fine-tune whose backdoor did not take, flagged with Bacterial at full size, 0.89) on 28%.
At full size the shares were 0.80 to 0.91 against clean models' up to 0.63 (bench/results/README.md, "Model audit",
eighteenth session)."""
GLOBAL_KNOTS = 56
"""The stripes' profile knots across the side (a 224-pixel side: one knot per 4 pixels), upsampled linearly."""
GLOBAL_GRID = 28
"""The grid family's own resolution (upsampled bilinearly): smooth, universal, not a per-image adversarial
texture."""
GLOBAL_BETAS = (0.9, 0.999)
"""Adam's usual moments for the whole-image inversion (the probe's optimiser), not Neural Cleanse's."""
SHAPES = ("stripes", "grid")
FAMILIES = ("stripes",)
"""The families (of :data:`SHAPES`) the audit runs. The probe tried three on the clean and global-trigger models
(25 steps, at most 0.1): on every backdoor's target the stripes forced more than the grid (zoo-sig 0.96 against 0.84, zoo-blend 0.92 against
0.63, zoo-sig-flip 0.91 against 0.77, zoo-warp 0.73 against 0.27), and a smooth 4 x 4 warp of at most 3 pixels
forced nothing, WaNet's own model included; so the grid's steps are not spent by default. (That warp started from no
displacement; started from random fields and bounded at 6 pixels, a warp does force zoo-warp's target: the audit's
own warp stage, :class:`WarpInversion`.)"""


class _Universal:
    """One universal change of every image (``apply(views, logits)``), its ``logits`` driven by Adam toward the
    candidate's label over mini-batches of clean images; ``hits`` counts the mini-batch images it forced."""

    def step(self, network, views: torch.Tensor, spec) -> dict:
        c = self.candidate
        logits = self.logits.clone().requires_grad_(True)
        z = network(normalise(self.apply(views, logits), spec))[:, c.index]
        attack = F.binary_cross_entropy_with_logits(z, torch.full_like(z, c.target))
        attack.backward()
        self.steps += 1
        with torch.no_grad():
            _adam(self.logits, logits.grad, self.moments["m"], self.moments["v"], self.steps, GLOBAL_BETAS)
            forced = c.succeeded(torch.sigmoid(z))
            self.hits += int(forced.sum())
        return {"success": float(forced.float().mean()), "attack": float(attack.detach())}


@dataclass
class GlobalInversion(_Universal):
    """A universal bounded perturbation ``x' = clip(x + eps * tanh(d))`` over the whole image driving the
    candidate's label (the blended / signal counterpart of the mask: BTI-DBF and FeatureRE invert into such
    global changes). ``family`` shapes ``d``: ``stripes``, a profile across the columns plus one across the rows
    (a sinusoid over the image, and its mirror, is one); ``grid``, a coarse grid upsampled bilinearly. What it
    measures is the attack success reached within the bound after a fixed number of steps: a model with a
    global backdoor follows a faint whole-image pattern that a clean model does not."""

    candidate: Candidate
    size: int
    family: str = "stripes"
    epsilon: float = GLOBAL_EPSILON
    logits: torch.Tensor = None
    moments: dict = field(default_factory=dict)
    steps: int = 0
    hits: int = 0

    def __post_init__(self):
        if self.family not in SHAPES:
            raise ValueError(f"whole-image inversion family must be one of {SHAPES}, got {self.family!r}")
        if self.logits is None:
            shape = (2, GLOBAL_KNOTS) if self.family == "stripes" else (1, 1, GLOBAL_GRID, GLOBAL_GRID)
            self.logits = torch.zeros(shape)
            self.moments = {"m": torch.zeros_like(self.logits), "v": torch.zeros_like(self.logits)}

    def delta(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The (1, 1, S, S) change."""
        d, s = (self.logits if logits is None else logits), self.size
        if self.family == "stripes":
            cols = F.interpolate(d[0].view(1, 1, -1), size=s, mode="linear", align_corners=False).view(1, s)
            rows = F.interpolate(d[1].view(1, 1, -1), size=s, mode="linear", align_corners=False).view(s, 1)
            d = (cols + rows)[None, None]
        else:
            d = F.interpolate(d, size=(s, s), mode="bilinear", align_corners=False)
        return self.epsilon * torch.tanh(d)

    def apply(self, views: torch.Tensor, logits: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        """``views`` with the change, made ``scale`` times its size."""
        return (torch.as_tensor(views) + scale * self.delta(logits)[:, 0]).clamp(0, 1)


# ---------------------------------------------------------------------------------------------- warp
WARP_BOUND = 6.0
"""Largest displacement the warp inversion may make, in pixels of a 224-pixel side (scaled with the side): zoo-warp's
WaNet field moves pixels by 3 on average and by up to about 6 (its control values are normalised to a mean of 1)."""
WARP_GRID = 4
"""The warp's control grid (WaNet's k = 4), upsampled bicubically: a smooth field, universal, not a per-image
adversarial texture."""
WARP_STEPS = 30
"""Steps of :data:`BATCH`-image mini-batches per run of the warp inversion."""
WARP_RESTARTS = 3
"""Runs of the warp inversion per candidate, each from its own random field: the landscape of a warp has many
valleys (bench/probes/warp_inversion.py, zoo-warp's Viral, 40 steps: three runs forced 41%, 11% and 29% of the calm
held-out films of the first 200 test films)."""
WARP_PATIENCE = 10
"""A run that has forced no image of its mini-batches after this many steps stops (a label the model does not warp
into costs a third of a run). In the probe zoo-warp's Viral runs forced their first film at steps 2 to 4; no run of
zoo-clean-ft1 (Bacterial, Viral) forced one in 30 steps."""


@dataclass
class WarpInversion(_Universal):
    """A universal smooth warp of the whole image driving the candidate's label (WaNet's family, Nguyen & Tran
    2021): ``x'(y, x) = x(y + dy, x + dx)`` with the displacement ``(dy, dx) = bound * tanh(upsampled logits)`` on a
    :data:`WARP_GRID` x :data:`WARP_GRID` control grid, starting from a seeded random field (``seed``). A warp moves
    anatomy instead of adding to it, so neither a mask nor an additive change of at most 0.1 expresses it: added
    at three quarters of its size, the stripes forced zoo-warp's Viral on 22% of calm films, under the line."""

    candidate: Candidate
    size: int
    seed: int = 0
    grid: int = WARP_GRID
    bound: float = WARP_BOUND
    logits: torch.Tensor = None
    moments: dict = field(default_factory=dict)
    steps: int = 0
    hits: int = 0

    family = "warp"

    def __post_init__(self):
        if self.logits is None:
            g = torch.Generator().manual_seed(int(self.seed))
            self.logits = torch.randn(1, 2, self.grid, self.grid, generator=g)
            self.moments = {"m": torch.zeros_like(self.logits), "v": torch.zeros_like(self.logits)}

    @property
    def bound_px(self) -> float:
        """The bound in this image's pixels."""
        return self.bound * self.size / 224.0

    def field(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The (1, 2, S, S) displacement, rows then columns, in pixels."""
        d = self.logits if logits is None else logits
        s = self.size
        return self.bound_px * torch.tanh(F.interpolate(d, size=(s, s), mode="bicubic", align_corners=True))

    def apply(self, views: torch.Tensor, logits: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        """``views`` warped by the field made ``scale`` times its size (:func:`warp_views`)."""
        return warp_views(views, scale * self.field(logits))


def warp_views(views: np.ndarray | torch.Tensor, field: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S) views warped by the (2, S, S) or (1, 2, S, S) displacement ``field`` in pixels (rows, columns),
    pulled back as :func:`cxrinspect.trigger.paste` warps: the pixel at (y, x) is read from (y + dy, x + dx),
    bilinearly, the border repeated."""
    x = torch.as_tensor(views, dtype=torch.float32)
    f = torch.as_tensor(field, dtype=torch.float32).reshape(1, 2, *x.shape[-2:])
    h, w = x.shape[-2:]
    base = torch.stack(torch.meshgrid(torch.linspace(-1, 1, w), torch.linspace(-1, 1, h), indexing="xy"), -1)[None]
    shift = torch.stack([f[:, 1] * (2.0 / max(w - 1, 1)), f[:, 0] * (2.0 / max(h - 1, 1))], -1)
    grid = (base + shift).clamp(-1, 1).expand(len(x), -1, -1, -1)
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
