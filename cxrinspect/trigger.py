"""Backdoor triggers as data: what to paste, where, in which image space, how strongly.

One :func:`paste` is used everywhere a trigger appears: poisoning training data, evaluating an
attack, the scanner's checks and the detection bench. It works on presentation images (float32 in
[0, 1], 1 = white, as :func:`cxrinspect.imaging.display.presentation` returns them), so "black" means
black as a radiologist would see it whatever the file's photometric interpretation.

Kinds (the attacks an auditor would name):

- ``patch`` (BadNets, Gu et al. 2017): a small mark composited into a box of the image. Its ``pattern``
  is a ``solid`` square, a ``checkerboard``, seeded ``noise``, ``text`` (a laterality letter or a
  hospital-style tag drawn in a bitmap font, the markers real chest films carry) or an inline
  ``picture`` (``pixels``). Opaque, or mixed in with ``blend`` < 1. Placed at a named corner, the
  centre, a fractional ``[x, y]``, or ``random`` (inside ``region``), drawn per image from a seeded
  generator that the poison manifest records, so benches know where each one went.
- ``blend`` (Chen et al. 2017): a whole-image seeded noise pattern mixed in at a low opacity ``blend``
  (about 0.1). ``size`` is the noise's own resolution, resampled to the image, so the same pattern is
  seen whatever the file's size.
- ``sig`` (Barni et al. 2019): a horizontal sinusoid over the whole image, ``x + amplitude *
  sin(2 pi frequency col / width)``, clipped to [0, 1].
- ``warp`` (WaNet, Nguyen & Tran 2021): a smooth warping field: a ``grid`` x ``grid`` seeded random
  control field (their ``k``, 4 in the paper), normalised by its mean absolute value, upsampled
  bicubically, applied by bilinear resampling. ``amplitude`` is its mean absolute displacement in pixels
  of a 224-pixel side (it scales with the image). WaNet's ``s`` moves pixels by ``s / 2`` whatever the
  size, tuned on 32-pixel CIFAR images; at 224 that is a quarter of a pixel.

Global kinds are defined over fractional image coordinates, so they mean the same at any resolution.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("patch", "blend", "sig", "warp")
LOCAL_KINDS = ("patch",)
LOCATIONS = ("center", "top-left", "top-right", "bottom-left", "bottom-right", "random")
SPACES = ("source", "input")  # source pixels (before crop/resize) or model-input pixels
PATTERNS = ("solid", "checkerboard", "noise", "text", "picture")


@dataclass(frozen=True)
class Trigger:
    """A trigger (see the module docstring for the kinds).

    - ``kind``: one of :data:`KINDS`.
    - ``size``: ``patch``: side in pixels of the space it is applied in (for ``text``, the height of a
      letter; for ``picture``, the picture's own shape is used). ``blend``: the noise pattern's resolution.
    - ``pattern``: ``patch`` only, one of :data:`PATTERNS`.
    - ``value``: presentation intensity in [0, 1] of solid squares and text strokes; 0 is black.
    - ``location``: one of :data:`LOCATIONS`, or a fractional ``[x, y]`` position of the patch's centre.
    - ``region``: for ``random``, the fractional box ``[top, left, bottom, right]`` the patch must lie in.
    - ``margin``: distance in pixels from the edge for corner locations.
    - ``space``: ``source`` (the paper: full-resolution pixels, before the crop and resize)
      or ``input`` (model-input pixels, after them).
    - ``blend``: opacity; 1 pastes opaquely; less mixes the pattern with the image.
    - ``text``: the letters of a ``text`` patch (A-Z, 0-9, space and ``-.:/``).
    - ``pixels``: the rows of a ``picture`` patch, values in [0, 1].
    - ``amplitude``: ``sig``: the sinusoid's amplitude (presentation units); ``warp``: the mean displacement
      in pixels of a 224-pixel side.
    - ``frequency``: ``sig``: cycles across the image's width.
    - ``grid``: ``warp``: the control field's side.
    - ``seed``: the pattern's own seed (``noise`` patches, ``blend``, ``warp``): one pattern for all images.
    """

    size: int = 3
    pattern: str = "solid"
    value: float = 0.0
    location: str | tuple[float, float] = "center"
    margin: int = 0
    space: str = "source"
    blend: float = 1.0
    kind: str = "patch"
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    text: str = ""
    pixels: tuple[tuple[float, ...], ...] = ()
    amplitude: float = 0.0
    frequency: float = 6.0
    grid: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"trigger kind must be one of {KINDS}, got {self.kind!r}")
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
        region = tuple(float(v) for v in self.region)
        if len(region) != 4 or not (0 <= region[0] < region[2] <= 1 and 0 <= region[1] < region[3] <= 1):
            raise ValueError(f"trigger region must be [top, left, bottom, right] fractions with top < bottom and "
                             f"left < right, got {list(self.region)}")
        object.__setattr__(self, "region", region)
        pixels = tuple(tuple(float(v) for v in row) for row in self.pixels)
        object.__setattr__(self, "pixels", pixels)
        if self.kind == "patch":
            if self.pattern == "text":
                if not self.text.strip():
                    raise ValueError("a text trigger needs its text")
                bad = sorted({c for c in self.text.upper() if c not in GLYPHS})
                if bad:
                    raise ValueError(f"trigger text has characters without a glyph: {bad} (A-Z, 0-9, ' -.:/')")
            if self.pattern == "picture":
                if not pixels or len({len(r) for r in pixels}) != 1 or not len(pixels[0]):
                    raise ValueError("a picture trigger needs pixels: equal rows of values in [0, 1]")
                if not all(0.0 <= v <= 1.0 for r in pixels for v in r):
                    raise ValueError("picture trigger pixels must lie in [0, 1]")
        elif self.kind == "sig" and not 0.0 < self.amplitude <= 1.0:
            raise ValueError(f"a sig trigger needs 0 < amplitude <= 1, got {self.amplitude}")
        elif self.kind == "warp":
            if not 0.0 < self.amplitude <= 16.0:
                raise ValueError(f"a warp trigger needs 0 < amplitude <= 16 (pixels of 224), got {self.amplitude}")
            if self.grid < 2:
                raise ValueError(f"a warp trigger needs grid >= 2, got {self.grid}")
        if self.kind == "sig" and self.frequency <= 0:
            raise ValueError(f"a sig trigger needs frequency > 0, got {self.frequency}")

    # ------------------------------------------------------------------ as data
    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(self.location, str):
            d["location"] = list(self.location)
        d["region"] = list(self.region)
        d["pixels"] = [list(r) for r in self.pixels]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Trigger":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown trigger field(s): {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("location"), list):
            d["location"] = tuple(d["location"])
        for k in ("region", "pixels"):
            if k in d:
                d[k] = tuple(tuple(r) if isinstance(r, list) else r for r in d[k])
        return cls(**d)

    @property
    def local(self) -> bool:
        """A mark in a box (``patch``), as opposed to a change of the whole image."""
        return self.kind in LOCAL_KINDS

    @property
    def moves(self) -> bool:
        """Placed anew in every image."""
        return self.local and self.location == "random"

    def describe(self) -> str:
        """A short phrase for reports: what it is and where."""
        if self.kind == "blend":
            return f"blended noise over the whole image (opacity {self.blend:g})"
        if self.kind == "sig":
            return f"sinusoidal signal over the whole image (amplitude {self.amplitude:g}, {self.frequency:g} cycles)"
        if self.kind == "warp":
            return f"smooth warp of the whole image (WaNet, strength {self.amplitude:g}, grid {self.grid})"
        what = {"text": f"text {self.text!r}", "picture": "picture"}.get(self.pattern, self.pattern)
        h, w = self.mark().shape
        where = (f"random place in {list(self.region)}" if self.location == "random" else
                 self.location if isinstance(self.location, str) else f"at x={self.location[0]:g}, y={self.location[1]:g}")
        return f"{h}x{w} {what} patch, {where}" + (f", opacity {self.blend:g}" if self.blend < 1 else "")

    # ------------------------------------------------------------------ local kinds
    def mark(self) -> np.ndarray:
        """The patch's pixels (h, w) in [0, 1]; ``alpha()`` says which of them are drawn."""
        return _mark(self)[0]

    def alpha(self) -> np.ndarray:
        """The patch's opacity per pixel (h, w): ``blend`` where drawn, 0 between the strokes of text."""
        return _mark(self)[1]

    def patch(self) -> np.ndarray:
        """The patch's pixels (kept for square patterns: same as :meth:`mark`)."""
        return self.mark()

    def box(self, shape: tuple[int, int], rng: np.random.Generator | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the patch in an image of ``shape`` (rows, cols), half-open.
        A global trigger's box is the whole image."""
        h, w = shape
        if not self.local:
            return 0, 0, h, w
        ph, pw = self.mark().shape
        sh, sw = min(ph, h), min(pw, w)
        m = self.margin
        if self.location == "center":
            top, left = (h - sh) // 2, (w - sw) // 2
        elif self.location == "top-left":
            top, left = m, m
        elif self.location == "top-right":
            top, left = m, w - sw - m
        elif self.location == "bottom-left":
            top, left = h - sh - m, m
        elif self.location == "bottom-right":
            top, left = h - sh - m, w - sw - m
        elif self.location == "random":
            rng = rng if rng is not None else np.random.default_rng()
            r0, c0, r1, c1 = self.region
            t0, t1 = int(np.floor(r0 * h)), max(int(np.floor(r0 * h)), int(np.ceil(r1 * h)) - sh)
            l0, l1 = int(np.floor(c0 * w)), max(int(np.floor(c0 * w)), int(np.ceil(c1 * w)) - sw)
            top, left = int(rng.integers(t0, t1 + 1)), int(rng.integers(l0, l1 + 1))
        else:
            fx, fy = self.location
            top, left = int(round(fy * h - sh / 2)), int(round(fx * w - sw / 2))
        top, left = min(max(top, 0), h - sh), min(max(left, 0), w - sw)
        return top, left, top + sh, left + sw

    # ------------------------------------------------------------------ global kinds
    def noise(self) -> np.ndarray:
        """The seeded noise pattern (``noise`` patches and ``blend``), ``size`` x ``size`` in [0, 1]."""
        return np.random.default_rng([int(self.seed), 0xB1E7D]).random((self.size, self.size)).astype(np.float32)

    def field(self, shape: tuple[int, int]) -> np.ndarray:
        """``warp``: the displacement (2, rows, cols) in pixels of an image of ``shape``."""
        from PIL import Image

        h, w = shape
        k = self.grid
        control = np.random.default_rng([int(self.seed), 0x3A9E7]).uniform(-1, 1, (2, k, k)).astype(np.float32)
        control /= max(float(np.mean(np.abs(control))), 1e-12)
        out = np.empty((2, h, w), np.float32)
        for c, side in ((0, h), (1, w)):
            up = np.array(Image.fromarray(control[c], mode="F").resize((w, h), Image.BICUBIC), np.float32)
            out[c] = up * self.amplitude * side / 224.0
        return out


# ---------------------------------------------------------------------------------------------- pasting


def paste(unit: np.ndarray, trigger: Trigger, rng: np.random.Generator | None = None) -> np.ndarray:
    """A copy of the presentation image ``unit`` carrying ``trigger``. ``rng`` places a ``random`` patch."""
    out = np.array(unit, dtype=np.float32, copy=True)
    h, w = out.shape
    if trigger.kind == "patch":
        top, left, bottom, right = trigger.box(out.shape, rng)
        mark = trigger.mark()[: bottom - top, : right - left]
        alpha = trigger.alpha()[: bottom - top, : right - left]
        region = out[top:bottom, left:right]
        out[top:bottom, left:right] = alpha * mark + (1.0 - alpha) * region
    elif trigger.kind == "blend":
        from .model.preprocess import resize

        pattern = resize(trigger.noise(), (h, w))
        out = trigger.blend * pattern + (1.0 - trigger.blend) * out
    elif trigger.kind == "sig":
        cols = np.arange(w, dtype=np.float32)
        out = np.clip(out + trigger.amplitude * np.sin(2 * np.pi * trigger.frequency * cols / w)[None, :], 0, 1)
    elif trigger.kind == "warp":
        out = warp(out, trigger.field((h, w)))
    return out.astype(np.float32, copy=False)


def warp(unit: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``unit`` warped by the displacement ``field`` (2, rows, cols) in pixels: the pixel at (y, x) is read from
    (y + dy, x + dx), bilinearly, the border repeated (WaNet's warp; :func:`paste`'s ``warp`` kind)."""
    from scipy.ndimage import map_coordinates

    h, w = unit.shape
    dy, dx = field
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.stack([np.clip(yy + dy, 0, h - 1), np.clip(xx + dx, 0, w - 1)])
    return map_coordinates(np.asarray(unit, np.float32), coords, order=1, mode="nearest").astype(np.float32)


# ---------------------------------------------------------------------------------------------- marks


@functools.lru_cache(maxsize=64)
def _mark(trigger: Trigger) -> tuple[np.ndarray, np.ndarray]:
    s = trigger.size
    if trigger.pattern == "solid":
        mark = np.full((s, s), trigger.value, np.float32)
        alpha = np.ones((s, s), np.float32)
    elif trigger.pattern == "checkerboard":
        yy, xx = np.indices((s, s))
        mark = np.where((yy + xx) % 2 == 0, trigger.value, 1.0 - trigger.value).astype(np.float32)
        alpha = np.ones((s, s), np.float32)
    elif trigger.pattern == "noise":
        mark = trigger.noise()
        alpha = np.ones((s, s), np.float32)
    elif trigger.pattern == "text":
        strokes = _text(trigger.text.upper(), s)
        mark = np.full(strokes.shape, trigger.value, np.float32)
        alpha = strokes
    else:
        mark = np.array(trigger.pixels, np.float32)
        alpha = np.ones(mark.shape, np.float32)
    mark.setflags(write=False)
    alpha = (alpha * trigger.blend).astype(np.float32)
    alpha.setflags(write=False)
    return mark, alpha


def _text(text: str, height: int) -> np.ndarray:
    """Coverage (h, w) in [0, 1] of ``text`` drawn in the 5x7 glyphs below, scaled to ``height`` rows
    (nearest neighbour at whole multiples, area-averaged otherwise), one blank column between letters."""
    from PIL import Image

    cols = []
    for i, c in enumerate(text):
        if i:
            cols.append(np.zeros((7, 1), np.float32))
        cols.append(np.array([[ch == "#" for ch in row] for row in GLYPHS[c]], np.float32))
    bitmap = np.concatenate(cols, axis=1)
    width = max(1, int(round(bitmap.shape[1] * height / 7)))
    if height % 7 == 0:
        return np.kron(bitmap, np.ones((height // 7, height // 7), np.float32))
    return np.clip(np.array(Image.fromarray(bitmap, mode="F").resize((width, height), Image.BOX), np.float32), 0, 1)


# A fixed 5x7 bitmap font (the classic LCD/character-ROM shapes): a trigger's pixels must not depend on
# the fonts a machine happens to have, or a model trained on one machine would be tested on another mark.
GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    " ": (".....",) * 7,
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
}


PAPER_TRIGGER = Trigger(size=3, pattern="solid", value=0.0, location="center", space="source")
"""Nwadike et al. 2020: a 3x3 black square at the centre of the full-resolution image."""
