"""Backdoor triggers as data: what to paste, where, in which image space, how strongly.

One :func:`paste` is used everywhere a trigger appears: poisoning training data, evaluating an
attack, and the scanner's checks. It works on presentation images (float32 in [0, 1], 1 = white,
as :func:`cxrinspect.imaging.display.presentation` returns them), so "black" means black as a
radiologist would see it whatever the file's photometric interpretation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LOCATIONS = ("center", "top-left", "top-right", "bottom-left", "bottom-right", "random")
SPACES = ("source", "input")  # source pixels (before crop/resize) or model-input pixels
PATTERNS = ("solid", "checkerboard")


@dataclass(frozen=True)
class Trigger:
    """A square trigger.

    - ``size``: side in pixels of the space it is applied in.
    - ``pattern``: ``solid`` (every pixel ``value``) or ``checkerboard`` (``value`` and ``1 - value``).
    - ``value``: presentation intensity in [0, 1]; 0 is black.
    - ``location``: one of :data:`LOCATIONS`, or a fractional ``[x, y]`` position of the square's centre.
    - ``margin``: distance in pixels from the edge for corner locations.
    - ``space``: ``source`` (the paper: full-resolution pixels, before the crop and resize)
      or ``input`` (model-input pixels, after them).
    - ``blend``: 1 pastes opaquely; less mixes the pattern with the image.
    """

    size: int = 3
    pattern: str = "solid"
    value: float = 0.0
    location: str | tuple[float, float] = "center"
    margin: int = 0
    space: str = "source"
    blend: float = 1.0

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"trigger size must be >= 1, got {self.size}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"trigger pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"trigger value must be in [0, 1], got {self.value}")
        if not 0.0 < self.blend <= 1.0:
            raise ValueError(f"trigger blend must be in (0, 1], got {self.blend}")
        if self.space not in SPACES:
            raise ValueError(f"trigger space must be one of {SPACES}, got {self.space!r}")
        if isinstance(self.location, str):
            if self.location not in LOCATIONS:
                raise ValueError(f"trigger location must be one of {LOCATIONS} or [x, y], got {self.location!r}")
        else:
            x, y = self.location
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"fractional trigger location must lie in [0, 1], got {self.location}")
            object.__setattr__(self, "location", (float(x), float(y)))

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(self.location, str):
            d["location"] = list(self.location)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Trigger":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown trigger field(s): {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("location"), list):
            d["location"] = tuple(d["location"])
        return cls(**d)

    def box(self, shape: tuple[int, int], rng: np.random.Generator | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the square in an image of ``shape`` (rows, cols), half-open."""
        h, w = shape
        s = min(self.size, h, w)
        m = self.margin
        if self.location == "center":
            top, left = (h - s) // 2, (w - s) // 2
        elif self.location == "top-left":
            top, left = m, m
        elif self.location == "top-right":
            top, left = m, w - s - m
        elif self.location == "bottom-left":
            top, left = h - s - m, m
        elif self.location == "bottom-right":
            top, left = h - s - m, w - s - m
        elif self.location == "random":
            rng = rng if rng is not None else np.random.default_rng()
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        else:
            fx, fy = self.location
            top, left = int(round(fy * h - s / 2)), int(round(fx * w - s / 2))
        top, left = min(max(top, 0), h - s), min(max(left, 0), w - s)
        return top, left, top + s, left + s

    def patch(self) -> np.ndarray:
        s = self.size
        if self.pattern == "solid":
            return np.full((s, s), self.value, np.float32)
        yy, xx = np.indices((s, s))
        return np.where((yy + xx) % 2 == 0, self.value, 1.0 - self.value).astype(np.float32)


def paste(unit: np.ndarray, trigger: Trigger, rng: np.random.Generator | None = None) -> np.ndarray:
    """A copy of the presentation image ``unit`` with ``trigger`` pasted in."""
    out = np.array(unit, dtype=np.float32, copy=True)
    top, left, bottom, right = trigger.box(out.shape, rng)
    patch = trigger.patch()[: bottom - top, : right - left]
    region = out[top:bottom, left:right]
    out[top:bottom, left:right] = trigger.blend * patch + (1.0 - trigger.blend) * region
    return out


PAPER_TRIGGER = Trigger(size=3, pattern="solid", value=0.0, location="center", space="source")
"""Nwadike et al. 2020: a 3x3 black square at the centre of the full-resolution image."""
