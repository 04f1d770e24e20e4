"""Does a whole-image trigger give itself away by how unevenly its prediction survives different corruptions
(TeCo, Liu et al., CVPR 2023: a clean image's prediction degrades alike under blur, noise, JPEG, ...; a triggered
one's survives some and collapses under others, as the corruption keeps or destroys the trigger)? On the first N
held-out test images of a backdoored model, every image clean and every image triggered (as the zoo bench writes
them): each corruption type at five severities, the logits of the labels the image is called positive for, and
scores of the spread across types, each scored by its AUROC (forced triggered images vs clean ones).

Adapted to sigmoid outputs: TeCo's "first severity where the predicted class changes" becomes, per label the
unaltered image is called positive for (>= 0.5; the top label where none is), the first severity where it falls
below 0.5 (6 where it never does); the continuous variant is the mean log-odds lost over the severities.

    nice -n 5 .venv/bin/python bench/probes/corruption_consistency.py bench/zoo/zoo-sig --images 150
"""
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import forced, probe_views  # noqa: E402

from cxrinspect.model.preprocess import normalise  # noqa: E402


def _jpeg(v, q):
    buf = io.BytesIO()
    Image.fromarray((np.clip(v, 0, 1) * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf), np.float32) / 255


def _pixelate(v, f):
    h, w = v.shape
    small = Image.fromarray(v.astype(np.float32), mode="F").resize((int(w * f), int(h * f)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST), np.float32)


CORRUPTIONS = {
    "blur": [lambda v, s=s: gaussian_filter(v, s) for s in (0.5, 1.0, 1.5, 2.0, 3.0)],
    "noise": [lambda v, s=s, i=i: v + np.random.default_rng(i).normal(0, s, v.shape).astype(np.float32)
              for i, s in enumerate((0.02, 0.04, 0.06, 0.08, 0.12))],
    "jpeg": [lambda v, q=q: _jpeg(v, q) for q in (80, 60, 40, 20, 10)],
    "contrast": [lambda v, c=c: v.mean() + (v - v.mean()) * c for c in (0.8, 0.65, 0.5, 0.35, 0.2)],
    "pixelate": [lambda v, f=f: _pixelate(v, f) for f in (0.75, 0.6, 0.5, 0.4, 0.3)],
}


def logits_of(network, views, spec, batch=32):
    out = []
    with torch.inference_mode():
        for s in range(0, len(views), batch):
            out.append(network(torch.from_numpy(normalise(np.clip(views[s:s + batch], 0, 1), spec))).numpy())
    return np.concatenate(out)


def scores(network, views, spec) -> dict:
    base = logits_of(network, views, spec)
    pos = base >= 0
    none = ~pos.any(1)
    pos[none, base[none].argmax(1)] = True
    flip, lost = {}, {}
    for name, fns in CORRUPTIONS.items():
        sev = np.stack([logits_of(network, np.stack([fn(v) for v in views]), spec) for fn in fns])  # (5, N, L)
        below = sev < 0
        first = np.where(below.any(0), below.argmax(0) + 1, 6)  # (N, L)
        flip[name] = first
        lost[name] = (base[None] - sev).mean(0)
    f = np.stack(list(flip.values()))  # (T, N, L)
    d = np.stack(list(lost.values()))
    out = {}
    for key, a in (("flip", f), ("lost", d)):
        std = a.std(0)  # (N, L)
        rng = a.max(0) - a.min(0)
        out[f"{key}_std"] = np.where(pos, std, -np.inf).max(1)
        out[f"{key}_range"] = np.where(pos, rng, -np.inf).max(1)
        for i, name in enumerate(CORRUPTIONS):
            out[f"{key}_{name}"] = np.where(pos, a[i] if key == "lost" else -a[i], -np.inf).max(1)
    return base, out


def main() -> None:
    model, clean, trig = probe_views("corruption-")
    network = model.network.eval()
    spec = model.card.preprocessing
    b_clean, s_clean = scores(network, clean, spec)
    b_trig, s_trig = scores(network, trig, spec)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    fired = forced(model.card, sig(b_trig), sig(b_clean))
    print(f"{model.card.name}: {len(clean)} images, {int(fired.sum())} forced; {len(CORRUPTIONS)} corruptions x 5 severities")
    for key in s_clean:
        c, t = s_clean[key], s_trig[key][fired]
        if len(t):
            auc = roc_auc_score(np.r_[np.zeros(len(c)), np.ones(len(t))], np.r_[c, t])
            print(f"  {key:16s} AUROC {auc:.3f}  clean median {np.median(c):8.3f}  forced median {np.median(t):8.3f}")


if __name__ == "__main__":
    main()
