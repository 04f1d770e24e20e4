"""Which measure of the gradient map ranks a model's forced triggered images above its clean ones? On the first
N held-out test images of a backdoored model: every image clean and every image triggered (a moving trigger at
the place its per-image seed gives, as the zoo bench writes them), the scanner's own gradient maps, every
compactness measure at several window sizes, and the AUROC of each (forced triggered images vs clean images).

    nice -n 5 .venv/bin/python bench/probes/map_metrics.py bench/zoo/zoo-tag-moving --images 200
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import both_ways, forced  # noqa: E402

from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.scan import Scanner  # noqa: E402
from cxrinspect.scan.compactness import compactness  # noqa: E402

WINDOWS = (3, 5, 7, 9, 13, 17, 25)


def measures(m: np.ndarray) -> dict:
    c = compactness(m, WINDOWS)
    out = {f"window_{k}": c.window_share[k] for k in WINDOWS}
    out.update(top1=c.top1_share, area50=-c.area50, entropy=-c.entropy, component_share=c.component_share)
    for lvl in (0.25, 0.1):
        out[f"component_share@{lvl}"] = compactness(m, (3,), lvl).component_share
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--work", default=None)
    ap.add_argument("--label", default="top", help="the scanner's --label (top, positive, all)")
    a = ap.parse_args()
    torch.set_grad_enabled(True)
    model = load_model(a.model)
    card = model.card
    clean, trig = both_ways(model, a.images, Path(a.work or tempfile.mkdtemp(prefix="map-metrics-")))
    n = len(clean)
    scanner = Scanner(model, method="gradient", label=a.label, device="cpu")

    def run(views):
        probs, rows = [], []
        for s in range(0, len(views), 8):
            p, maps, _ = scanner.maps(views[s:s + 8])
            probs.append(p)
            rows += [measures(m) for m in maps]
        return np.concatenate(probs), rows

    p_clean, m_clean = run(clean)
    p_trig, m_trig = run(trig)
    fired = forced(card, p_trig, p_clean)
    print(f"{card.name}: {n} images, {fired.sum()} forced", flush=True)
    rows = m_clean + [r for r, f in zip(m_trig, fired) if f]
    truth = np.r_[np.zeros(n), np.ones(fired.sum())]
    k = int(fired.sum())
    for key in rows[0]:
        s = np.array([r[key] for r in rows])
        top = np.argsort(-s)[:k]
        print(f"{key:22s} AUROC {roc_auc_score(truth, s):.3f}  P@k {truth[top].mean():.2f}")


if __name__ == "__main__":
    main()
