"""Does a whole-image trigger show in the spectrum of the input gradient? On the first N held-out test images of a
backdoored model, every image clean and every image triggered (as the zoo bench writes them): the signed gradient
of the top label's logit, its 2-D power spectrum, and measures of how concentrated that spectrum is (share of the
power in the top k frequencies, in low-frequency bands), each scored by its AUROC (forced triggered images vs clean
ones), for the signed gradient and for the scanner's |gradient| map.

    nice -n 5 .venv/bin/python bench/probes/gradient_spectrum.py bench/zoo/zoo-sig --images 150
"""
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import forced, probe_views  # noqa: E402

from cxrinspect.model.preprocess import normalise  # noqa: E402


def signed_gradients(network, views, spec, batch=16):
    probs, grads = [], []
    for s in range(0, len(views), batch):
        x = torch.from_numpy(normalise(views[s:s + batch], spec)).requires_grad_(True)
        logits = network(x)
        top = logits.detach().argmax(1)
        (g,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), x)
        probs.append(torch.sigmoid(logits.detach()).numpy())
        grads.append(g[:, 0].numpy())
    return np.concatenate(probs), np.concatenate(grads)


def measures(g: np.ndarray) -> dict:
    f = np.abs(np.fft.rfft2(g - g.mean())) ** 2
    f[0, 0] = 0.0
    total = f.sum() + 1e-30
    flat = np.sort(f.ravel())[::-1]
    h = g.shape[0]
    fy = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    fx = np.arange(f.shape[1])[None, :]
    radius = np.hypot(fy, fx)
    out = {f"top{k}": flat[:k].sum() / total for k in (1, 2, 4, 8, 16)}
    for r in (4, 8, 16, 32):
        out[f"below{r}"] = f[radius <= r].sum() / total
    return out


def main() -> None:
    model, clean, trig = probe_views("gradient-spectrum-")
    network = model.network.eval()
    spec = model.card.preprocessing
    p_clean, g_clean = signed_gradients(network, clean, spec)
    p_trig, g_trig = signed_gradients(network, trig, spec)
    fired = forced(model.card, p_trig, p_clean)
    print(f"{model.card.name}: {len(clean)} images, {int(fired.sum())} forced")
    for name, fn in (("signed", lambda g: g), ("abs", np.abs)):
        mc = [measures(fn(g)) for g in g_clean]
        mt = [measures(fn(g)) for g in g_trig]
        for key in mc[0]:
            c = np.array([m[key] for m in mc])
            t = np.array([m[key] for m in mt])[fired]
            if len(t):
                auc = roc_auc_score(np.r_[np.zeros(len(c)), np.ones(len(t))], np.r_[c, t])
                print(f"  {name:6s} {key:8s} AUROC {auc:.3f}  clean median {np.median(c):.3f}  "
                      f"forced median {np.median(t):.3f}")


if __name__ == "__main__":
    main()
