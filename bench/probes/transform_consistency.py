"""Which geometric or resampling transform makes a triggered image's forced labels fall and a clean one's keep?
On N held-out test images spread over the split, every image clean and every image triggered (as the zoo bench
writes them): per transform, the log-odds the labels the image is called positive for lose (the ``contrast``
detector's score with another transform in place of the lowered contrast), and the AUROC of forced triggered
images against clean ones. Transformation tests are an old backdoor defence (Li et al. 2021, "Backdoor attack in
the physical world": flipping or shrinking moves a trigger from where the network learned it); the models here
were trained without flips, so a mirrored film is a film they never saw, and so is a mirrored trigger.

    nice -n 5 .venv/bin/python bench/probes/transform_consistency.py bench/zoo/zoo-sig --images 150
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruption_consistency import logits_of  # noqa: E402
from scan_detection import forced, probe_views  # noqa: E402

from cxrinspect.scan.detectors.consistency import lowered  # noqa: E402


def resized(v: np.ndarray, scale: float) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(v))[:, None]
    h, w = v.shape[1:]
    small = F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
    return small


def zoom_in(v, keep=0.8):
    h, w = v.shape[1:]
    t, l = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    x = torch.from_numpy(np.ascontiguousarray(v[:, t:h - t, l:w - l]))[:, None]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()


def zoom_out(v, keep=0.8):
    h, w = v.shape[1:]
    small = resized(v, keep)[:, 0].numpy()
    out = np.repeat(v.mean((1, 2), keepdims=True), h, 1).repeat(w, 2)
    sh, sw = small.shape[1:]
    t, l = (h - sh) // 2, (w - sw) // 2
    out[:, t:t + sh, l:l + sw] = small
    return out


def down_up(v, scale=0.5):
    h, w = v.shape[1:]
    return F.interpolate(resized(v, scale), size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()


def shifted(v, dx=0.08):
    from scipy.ndimage import shift
    return np.stack([shift(x, (0, dx * x.shape[1]), order=1, mode="nearest") for x in v])


def rotated(v, deg=12):
    from scipy.ndimage import rotate
    return np.stack([rotate(x, deg, reshape=False, order=1, mode="nearest") for x in v])


TRANSFORMS = {
    "mirror left-right": lambda v: v[:, :, ::-1],
    "mirror up-down": lambda v: v[:, ::-1, :],
    "shift 8%": shifted,
    "rotate 12 deg": rotated,
    "zoom in 0.8": zoom_in,
    "zoom out 0.8": zoom_out,
    "down-up 0.5": down_up,
    "down-up 0.25": lambda v: down_up(v, 0.25),
    "contrast 0.5": lambda v: lowered(v, 0.5),
}


def main() -> None:
    model, clean, trig = probe_views("transform-")
    network, spec = model.network.eval(), model.card.preprocessing
    t = np.array([model.card.thresholds.get(lab, 0.5) for lab in model.labels], np.float64)

    def forward(v):
        return logits_of(network, np.ascontiguousarray(v, np.float32), spec).astype(np.float64)

    base_c, base_t = forward(clean), forward(trig)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    fired = forced(model.card, sig(base_t), sig(base_c))
    print(f"{model.card.name}: {len(clean)} images, {int(fired.sum())} forced")
    y = np.r_[np.zeros(len(clean)), np.ones(int(fired.sum()))]

    def score(views, base, fn):
        positive = base >= np.log(t) - np.log1p(-t)
        none = ~positive.any(1)
        positive[none, base[none].argmax(1)] = True
        return np.where(positive, base - forward(fn(views)), -np.inf).max(1)

    for name, fn in TRANSFORMS.items():
        c, tr = score(clean, base_c, fn), score(trig, base_t, fn)
        print(f"  {name:18s} AUROC {roc_auc_score(y, np.r_[c, tr[fired]]):.3f}  clean median {np.median(c):6.2f} "
              f"(95th pct {np.percentile(c, 95):6.2f}), forced median {np.median(tr[fired]):6.2f}", flush=True)


if __name__ == "__main__":
    main()
