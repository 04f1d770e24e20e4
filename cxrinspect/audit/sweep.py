"""The stamp sweep: a forward-only search for a one-place patch backdoor, before Neural Cleanse.

Neural Cleanse starts from a faint veil over the whole image and must shrink it onto the trigger; in the
hundred-odd steps a candidate gets on this CPU it often does not, and a trigger that fires only at its trained
place is the needle its gradient finds worst (bench/probes/audit_grid.py). The sweep asks the model directly:

    for each pattern (black, white, a checkerboard of 1-pixel cells) and each lattice offset (a STRIDE grid
    inside SPACING x SPACING):
        stamp a lattice of SIZE x SIZE squares, SPACING apart, into a few clean images; read every label's logit
    per (label, pattern): the lattice that forces the label on most (mean logit) -> halve it, keeping the half
    that forces it more, down to one square -> try the smaller squares inside it -> the smallest square that
    forces the label on (probability >= 0.9) in the sweep's images

A trigger up to ``SIZE - STRIDE + 1`` pixels wide (3 x 3 here) lies wholly inside a square of one lattice
wherever it sits; a larger one (a glyph) is partly covered, and a solid square of its colour on its place may
be enough. The lattice that forces the label most is followed even when it forces nothing: the other 195
squares interfere (measured on zoo-letter, Viral: one white 4 x 4 square on the letter's place takes the mean
logit of 8 normal films from -3.5 to 3.9, the whole lattice holding it to -4.3, still the top lattice against
a median of -7.1), and halving sheds them. A square found is tested on all the candidate's images to optimise
on, seeds its inversion, and the held-out cross-check and the verdict treat it as any recovered trigger.

Cost, forwards only: ``(SPACING / STRIDE)^2 x len(PATTERNS) x IMAGES`` (1536) for the lattices, about
``2 x IMAGES x log2(lattice squares)`` (128) per label and pattern, up to 30 x IMAGES for the smaller squares:
about 2800 forwards for 3 labels. It finds solid and checkerboard squares (BadNets' own triggers); a picture,
a moving or a global trigger is Neural Cleanse's to find.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..model.preprocess import normalise
from .inversion import SUCCESS as LINE

SIZE, STRIDE, SPACING = 4, 2, 16
PATTERNS = ("black", "white", "checker")
IMAGES = 8
_LOGIT_LINE = float(np.log(LINE / (1 - LINE)))  # the attack-success line, on the logit


@dataclass(frozen=True)
class Square:
    label: int
    pattern_name: str  # one of PATTERNS
    top: int
    left: int
    size: int
    success: float  # share of the sweep's eligible images forced on

    def mask(self, input_size: int) -> np.ndarray:
        m = np.zeros((input_size, input_size), np.float32)
        m[self.top:self.top + self.size, self.left:self.left + self.size] = 1.0
        return m

    def pattern(self, input_size: int) -> np.ndarray:
        p = np.zeros((input_size, input_size), np.float32)
        p[self.top:self.top + self.size, self.left:self.left + self.size] = fill(self.pattern_name, self.size)
        return p

    def to_dict(self) -> dict:
        return {"label": self.label, "pattern_name": self.pattern_name, "top": self.top, "left": self.left,
                "size": self.size, "success": self.success}

    @classmethod
    def from_dict(cls, d: dict) -> Square:
        return cls(**d)


def fill(name: str, size: int) -> np.ndarray:
    """A square's pixels, [0, 1]: black, white, or a checkerboard of 1-pixel cells (white at its top-left)."""
    if name == "checker":
        return ((np.add.outer(np.arange(size), np.arange(size)) + 1) % 2).astype(np.float32)
    return np.full((size, size), {"black": 0.0, "white": 1.0}[name], np.float32)


def lattice(offset: tuple[int, int], size: int, input_size: int, spacing: int = SPACING) -> list[tuple[int, int]]:
    oy, ox = offset
    end = input_size - size + 1
    return [(y, x) for y in range(oy, end, spacing) for x in range(ox, end, spacing)]


def stamp_squares(views: np.ndarray, places: list[tuple[int, int]], size: int, name: str) -> np.ndarray:
    out, square = views.copy(), fill(name, size)
    for y, x in places:
        out[:, y:y + size, x:x + size] = square
    return out


def _logits(network, views: np.ndarray, spec, batch: int = 32) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(views), batch):
            out.append(network(normalise(torch.as_tensor(views[i:i + batch]), spec)).numpy())
    return np.concatenate(out)


def sweep(network, views: np.ndarray, eligible: np.ndarray, spec, labels: list[int], *,
          progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None
          ) -> list[Square] | None:
    """The squares found per (label, pattern) for the ``labels`` driven on, of every size that forces the
    label. ``views`` (N, S, S) are the sweep's clean images, ``eligible`` (N, L) which of them each label may be
    forced on in. None if cancelled."""
    size_in = spec.input_size
    offsets = [(oy, ox) for oy in range(0, SPACING, STRIDE) for ox in range(0, SPACING, STRIDE)]
    total, done = len(PATTERNS) * len(offsets), 0
    found = []
    for name in PATTERNS:
        mean = np.zeros((len(offsets), eligible.shape[1]))
        for k, off in enumerate(offsets):
            if cancelled is not None and cancelled():
                return None
            z = _logits(network, stamp_squares(views, lattice(off, SIZE, size_in), SIZE, name), spec)
            for j in labels:
                e = eligible[:, j]
                mean[k, j] = z[e, j].mean()
            done += 1
            if progress is not None:
                progress(done, total)
        for j in labels:
            e = eligible[:, j]
            k = int(np.argmax(mean[:, j]))  # followed even when it forces nothing: the other squares interfere
            found += _narrow(network, views[e], spec, j, lattice(offsets[k], SIZE, size_in), name)
    return found


def _narrow(network, views, spec, j, places, name) -> list[Square]:
    """Halve the lattice to one square, then try the smaller squares inside it: every size that reaches the
    line on these images, largest first (each the best place of its size)."""
    def score(pl, size):
        z = _logits(network, stamp_squares(views, pl, size, name), spec)[:, j]
        return float(z.mean()), float((z >= _LOGIT_LINE).mean())

    while len(places) > 1:
        h = len(places) // 2
        halves = (places[:h], places[h:])
        places = max(halves, key=lambda pl: score(pl, SIZE)[0])
    (y, x), = places
    line = np.floor(LINE * len(views) + 1e-9) / len(views)
    found = []
    for size in range(SIZE, 0, -1):
        tries = [(score([(y + dy, x + dx)], size), y + dy, x + dx)
                 for dy in range(SIZE - size + 1) for dx in range(SIZE - size + 1)]
        (mean, hit), ty, tx = max(tries, key=lambda t: (t[0][1], t[0][0]))
        if hit < line:
            break
        found.append(Square(j, name, ty, tx, size, round(hit, 4)))
    return found
