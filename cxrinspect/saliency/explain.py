"""One image, one or more labels -> saliency maps over the original image: what the viewer and `render` show."""

from __future__ import annotations

import numpy as np
import torch

from ..imaging.radiograph import Radiograph
from ..model.preprocess import model_view, normalise, to_source
from .attribution import saliency, upsample
from .cam import class_activation_maps


def label_indices(labels: list[str], wanted) -> list[int]:
    """Label names or indices -> indices into ``labels``; a clear error for an unknown name."""
    wanted = [wanted] if isinstance(wanted, (str, int)) else list(wanted)
    out = []
    for w in wanted:
        if isinstance(w, str):
            if w not in labels:
                raise ValueError(f"unknown label {w!r}; the model's labels are {', '.join(labels)}")
            out.append(labels.index(w))
        else:
            if not 0 <= int(w) < len(labels):
                raise ValueError(f"label index {w} out of range for {len(labels)} labels")
            out.append(int(w))
    return out


def explain(model, image: Radiograph | np.ndarray, labels, method: str = "gradient", device: str | None = None,
            **options) -> np.ndarray:
    """Saliency maps (len(labels), rows, cols), float32 >= 0, on the source image's pixel grid.

    ``model`` is a loaded :class:`cxrinspect.model.Model`; ``image`` a Radiograph or its [0, 1] presentation;
    ``labels`` names or indices. ``cam`` makes every label's map in one forward pass; the other methods
    run once per label (see :func:`cxrinspect.saliency.saliency` for ``options``).
    """
    spec = model.card.preprocessing
    idx = label_indices(model.labels, labels)
    network = model.network.eval()
    dev = torch.device(device or next(network.parameters()).device)
    network = network.to(dev)
    view = model_view(image, spec)
    source_shape = image.shape if isinstance(image, Radiograph) else np.asarray(image).shape
    x = torch.from_numpy(normalise(view, spec))[None].to(dev)
    if method == "cam":
        _, cams = class_activation_maps(network, x)
        maps = upsample(cams[0, idx], spec.input_size)
    else:
        maps = saliency(network, x.expand(len(idx), -1, -1, -1), idx, method, **options)
    return np.stack([to_source(m, tuple(source_shape), spec) for m in maps])
