"""THE preprocessing path: one function turns a radiograph into a model input.

Training, inference, scanning, the GUI and ONNX export all call :func:`preprocess`, so the model
always sees pixels prepared the same way (train/serve skew is this field's classic bug).

    Radiograph -> default presentation in [0, 1] -> [trigger in source pixels]
               -> central crop -> resize (antialiased bilinear) to input_size
               -> [trigger in input pixels] -> channels -> (x - mean) / std
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..imaging.display import presentation
from ..imaging.radiograph import Radiograph
from ..trigger import Trigger, paste

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input; stored in the model card."""

    input_size: int = 224
    channels: int = 3
    crop_fraction: float = 1.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {self.input_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            raise ValueError("mean and std need one value or one per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s): {sorted(unknown)}")
        return cls(**d)


def crop_box(shape: tuple[int, int], crop_fraction: float) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the central crop of an image of ``shape``."""
    h, w = shape
    ch, cw = max(1, int(round(h * crop_fraction))), max(1, int(round(w * crop_fraction)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return top, left, top + ch, left + cw


def resize(unit: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a 2-D float image to size x size, or to (rows, cols) (Pillow,
    float32 throughout; equal to torch's ``interpolate(..., antialias=True)`` within 3e-6, no torch)."""
    rows, cols = (size, size) if isinstance(size, int) else size
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    if unit.shape == (rows, cols):
        return unit
    return np.array(Image.fromarray(unit, mode="F").resize((cols, rows), Image.BILINEAR), dtype=np.float32)


def to_source(model_map: np.ndarray, source_shape: tuple[int, int], spec: Preprocessing) -> np.ndarray:
    """Undo the geometry of :func:`model_view` for a map over model-input pixels (a saliency map):
    resize it back to the central crop and place it in a source-sized canvas (zero outside the crop)."""
    top, left, bottom, right = crop_box(source_shape, spec.crop_fraction)
    canvas = np.zeros(source_shape, np.float32)
    canvas[top:bottom, left:right] = resize(model_map, (bottom - top, right - left))
    return canvas


def to_source_box(box: tuple[int, int, int, int], source_shape: tuple[int, int],
                  spec: Preprocessing) -> tuple[int, int, int, int]:
    """A (top, left, bottom, right) box over model-input pixels -> the same region in source pixels."""
    c_top, c_left, c_bottom, c_right = crop_box(source_shape, spec.crop_fraction)
    fy, fx = (c_bottom - c_top) / spec.input_size, (c_right - c_left) / spec.input_size
    top, left, bottom, right = box
    return (c_top + int(np.floor(top * fy)), c_left + int(np.floor(left * fx)),
            c_top + int(np.ceil(bottom * fy)), c_left + int(np.ceil(right * fx)))


def model_view(image: Radiograph | np.ndarray, spec: Preprocessing, trigger: Trigger | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """The image as the model sees it before normalisation: input_size x input_size float32 in [0, 1].

    ``image`` is a Radiograph or an already-presented [0, 1] array (the training cache stores those).
    """
    unit = presentation(image) if isinstance(image, Radiograph) else np.asarray(image, dtype=np.float32)
    if unit.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {unit.shape}")
    if trigger is not None and trigger.space == "source":
        unit = paste(unit, trigger, rng)
    top, left, bottom, right = crop_box(unit.shape, spec.crop_fraction)
    unit = resize(unit[top:bottom, left:right], spec.input_size)
    if trigger is not None and trigger.space == "input":
        unit = paste(unit, trigger, rng)
    return unit


def stamp(unit: np.ndarray, spec: Preprocessing, trigger: Trigger, rng: np.random.Generator | None = None) -> np.ndarray:
    """A copy of a source-resolution presentation ``unit`` carrying ``trigger`` as a file would: a source-space
    trigger is pasted as is. An input-space patch fills the source pixels that the crop and resize turn into
    its model-input box (the patch as drawn in the model view, edges softened by the resize); an input-space
    global trigger (blend, sig, warp: defined over fractional coordinates) is applied to the central crop at
    source resolution. Where the source is already at input resolution and uncropped, the file's model view
    equals :func:`model_view` with the trigger exactly. Poisoned copies, triggered sample files and the
    detection bench's folders are made with it."""
    if trigger.space == "source":
        return paste(unit, trigger, rng)
    out = np.array(unit, dtype=np.float32, copy=True)
    c_top, c_left, c_bottom, c_right = crop_box(out.shape, spec.crop_fraction)
    if not trigger.local:
        out[c_top:c_bottom, c_left:c_right] = paste(out[c_top:c_bottom, c_left:c_right], trigger, rng)
        return out
    s = spec.input_size
    top, left, bottom, right = trigger.box((s, s), rng)
    fy, fx = (c_bottom - c_top) / s, (c_right - c_left) / s
    r0, r1 = c_top + int(round(top * fy)), c_top + int(round(bottom * fy))
    k0, k1 = c_left + int(round(left * fx)), c_left + int(round(right * fx))
    mark, alpha = trigger.mark(), trigger.alpha()
    rows = np.minimum(((np.arange(r0, r1) - c_top) / fy).astype(int) - top, bottom - top - 1)
    cols = np.minimum(((np.arange(k0, k1) - c_left) / fx).astype(int) - left, right - left - 1)
    a = alpha[np.ix_(rows, cols)]
    out[r0:r1, k0:k1] = a * mark[np.ix_(rows, cols)] + (1.0 - a) * out[r0:r1, k0:k1]
    return out


def normalise(view, spec: Preprocessing):
    """[0, 1] model view(s) (H, W) or (N, H, W) -> (C, H, W) or (N, C, H, W), ``(x - mean) / std``.

    A numpy array gives a numpy array (the CPU inference path needs no torch); a torch tensor gives a
    tensor on the same device (training normalises cached batches on the GPU).
    """
    batched = view.ndim == 3
    x = view if batched else view[None]
    c = spec.channels
    if isinstance(x, np.ndarray):
        mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(spec.std, np.float32).reshape(1, -1, 1, 1)
        out = (np.broadcast_to(x.astype(np.float32, copy=False)[:, None], (x.shape[0], c, *x.shape[1:])) - mean) / std
        out = np.ascontiguousarray(out, dtype=np.float32)
    else:
        import torch

        x = x.float()
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        out = ((x[:, None].expand(-1, c, -1, -1) - mean) / std).contiguous()
    return out if batched else out[0]


def prepare(image: Radiograph | np.ndarray, spec: Preprocessing, trigger: Trigger | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Radiograph (or [0, 1] presentation array) -> model input, numpy float32 (C, H, W)."""
    return normalise(model_view(image, spec, trigger, rng), spec)


def preprocess(image: Radiograph | np.ndarray, spec: Preprocessing, trigger: Trigger | None = None,
               rng: np.random.Generator | None = None):
    """Radiograph (or [0, 1] presentation array) -> model input, a torch tensor (C, H, W)."""
    import torch

    return torch.from_numpy(prepare(image, spec, trigger, rng))
