"""How should mask distillation be tuned? On a backdoored model's held-out test images: distil masks for K
clean films and for K triggered films whose prediction the trigger forced, under several settings, and print
for each setting and checkpoint the masks' mean (clean vs forced) and the AUROC of ``1 - mean`` (forced vs
clean), plus the seconds per image.

    nice -n 5 .venv/bin/python bench/probes/distill_tune.py bench/zoo/zoo-tag-moving --images 120 --k 12 \
        --alphas 1,10,40 --steps 80 --checkpoints 20,40,80

Every setting is run through :func:`cxrinspect.scan.detectors.distill.distil` itself (``trace`` gives the
checkpoints), so what is measured here is what the scanner runs.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import both_ways, forced  # noqa: E402

from cxrinspect.audit.run import probabilities  # noqa: E402
from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.model.preprocess import normalise  # noqa: E402
from cxrinspect.scan.detectors.distill import distil  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=120, help="first N held-out test images to draw from")
    ap.add_argument("--k", type=int, default=12, help="clean and forced images each")
    ap.add_argument("--alphas", default="1,10,40")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--checkpoints", default="20,40,80")
    ap.add_argument("--cell", type=int, default=1, help="mask cell side in model pixels")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    torch.set_grad_enabled(True)
    model = load_model(a.model)
    card, spec = model.card, model.card.preprocessing
    clean, trig = both_ways(model, a.images, Path(a.work or tempfile.mkdtemp(prefix="distill-tune-")))
    n = len(clean)

    p_clean, p_trig = probabilities(model.network, clean, spec), probabilities(model.network, trig, spec)
    fired = np.nonzero(forced(card, p_trig, p_clean))[0]
    print(f"{card.name}: {len(fired)} of {n} forced; using {min(a.k, len(fired))} forced and {a.k} clean", flush=True)
    f_idx = fired[: a.k]
    c_idx = np.array([i for i in range(n) if i not in set(fired.tolist())][: a.k])
    views = np.concatenate([trig[f_idx], clean[c_idx]])
    truth = np.r_[np.ones(len(f_idx)), np.zeros(len(c_idx))]
    network = model.network.to(memory_format=torch.channels_last)

    def prepare(v):
        return normalise(v, spec).contiguous(memory_format=torch.channels_last)

    # why the mask moves or not: at the start, the logit term's gradient per mask cell against the size penalty's
    v = torch.from_numpy(views[:8])[:, None]
    with torch.no_grad():
        target = network(prepare(v[:, 0])).float()
    w = torch.full((len(v), 1, 224 // a.cell, 224 // a.cell), 1.0, requires_grad=True)
    m = ((torch.tanh(w) + 1) / 2).repeat_interleave(a.cell, 2).repeat_interleave(a.cell, 3)
    out = network(prepare((v * m + (1 - m) * 0.5)[:, 0])).float()
    (grad,) = torch.autograd.grad((out - target).abs().mean(1).sum(), w)
    print(f"logit term's gradient per cell at the start: median {grad.abs().median():.2e}; the size penalty's at "
          f"alpha 1: {a.cell ** 2 / 224 ** 2 * (1 - np.tanh(1) ** 2) / 2:.2e}", flush=True)
    marks = [int(c) for c in a.checkpoints.split(",")]
    for alpha in [float(x) for x in a.alphas.split(",")]:
        t0 = time.perf_counter()
        traces = []
        for s in range(0, len(views), 8):
            trace = {}

            def keep(step, m, trace=trace):
                if step in marks:
                    trace[step] = m.detach()[:, 0].float().numpy()

            distil(network, torch.from_numpy(views[s:s + 8]), prepare, steps=a.steps, lr=a.lr, alpha=alpha,
                   cell=a.cell, each=keep)
            traces.append(trace)
        sec = (time.perf_counter() - t0) / len(views)
        for c in marks:
            m = np.concatenate([t[c] for t in traces])
            mean = m.reshape(len(m), -1).mean(1)
            kept = (m >= 0.5).reshape(len(m), -1).mean(1)
            auc = roc_auc_score(truth, 1 - mean)
            print(f"alpha {alpha:g} step {c}: mean forced {np.round(np.sort(mean[truth == 1]), 3).tolist()} "
                  f"clean {np.round(np.sort(mean[truth == 0]), 3).tolist()} | kept>=0.5 forced median "
                  f"{np.median(kept[truth == 1]):.4f} clean median {np.median(kept[truth == 0]):.4f} min "
                  f"{kept[truth == 0].min():.4f} | AUROC {auc:.3f}", flush=True)
        print(f"alpha {alpha:g}: {sec:.2f} s per image ({a.steps} steps)", flush=True)


if __name__ == "__main__":
    main()
