"""Can scaled-parameter consistency flag an image on its own, and with what line? Per model: its held-out test
images (the scan bench's folder at 10% triggered, same seed), psc's weakest-label margin (log-odds by which the
amplified copies keep the label decision they hold least firmly, averaged over the copies) and that score's
robust z over the folder (the scan's ``combine``). Prints the clean images' z tail and, for a backdoored model,
the AUROC over all triggered and over forced images and the share of each over z lines.

    nice -n 5 .venv/bin/python bench/probes/psc_flag.py MODEL_DIR [--clean-images] [--work runs/probe-psc]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import forced, views_of, write_folder  # noqa: E402

from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.model.preprocess import normalise  # noqa: E402
from cxrinspect.scan import Scanner  # noqa: E402
from cxrinspect.scan.run import CALIBRATION  # noqa: E402
from cxrinspect.training.evaluation import dataset_from_card, split_indices  # noqa: E402

LINES = (3.0, 4.0, 5.0, 6.0, 8.0)


def robust_z(s):
    med = np.median(s)
    return (s - med) / max(1.4826 * np.median(np.abs(s - med)), 1e-6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--clean-images", action="store_true", help="score the clean folder (no trigger stamped)")
    ap.add_argument("--work", default="runs/probe-psc")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(a.model)
    card, spec = model.card, model.card.preprocessing
    ds = dataset_from_card(model)
    test, _ = split_indices(model, ds, "test")
    paths = [str(ds.file(int(i))) for i in test]
    n = len(paths)
    chosen = set() if a.clean_images or card.trigger is None else \
        set(np.random.default_rng(0).choice(n, size=max(1, round(0.1 * n)), replace=False).tolist())
    truth = np.array([i in chosen for i in range(n)])
    work = Path(a.work).absolute() / card.name
    files = write_folder(work / ("clean" if not chosen else "images-0.1"), paths, chosen, card.trigger, spec,
                         work / "files") if chosen else paths
    views = views_of(files, spec)
    sc = Scanner(model, method="psc", device="cpu")
    sc.calibrate(views[np.unique(np.linspace(0, n - 1, 2 * CALIBRATION).astype(int))[:CALIBRATION]])
    margins = np.concatenate([sc.psc.margins(sc._input(views[s:s + 16])).numpy() for s in range(0, n, 16)])
    scores = {"mean_sigmoid": (1 / (1 + np.exp(-margins))).mean((1, 2)), "weakest_label": margins.mean(1).min(1)}
    out = {"model": card.name, "images": n, "triggered": int(truth.sum()), "start": sc.psc.start}
    if chosen:
        clean_views = views_of(paths, spec)
        prob = lambda v: np.concatenate([torch.sigmoid(model.network(torch.from_numpy(normalise(v[s:s + 32], spec))))  # noqa: E731
                                         .numpy() for s in range(0, n, 32)])
        fired = truth & forced(card, prob(views), prob(clean_views))
        out["forced"] = int(fired.sum())
    for name, s in scores.items():
        z = robust_z(s)
        row = {"clean_z_q50_q99_max": np.round(np.quantile(z[~truth], [0.5, 0.99, 1.0]), 2).tolist(),
               "clean_over": {f"z>={t:g}": int((z[~truth] >= t).sum()) for t in LINES},
               "clean_saturated": int((s[~truth] >= s.max() - 1e-6).sum()) if name == "mean_sigmoid" else None}
        if chosen:
            keep = ~truth | fired
            row["auroc_all"] = round(float(roc_auc_score(truth, s)), 4)
            row["auroc_forced"] = round(float(roc_auc_score(fired[keep], s[keep])), 4) if fired.any() else None
            row["forced_over"] = {f"z>={t:g}": int((z[fired] >= t).sum()) for t in LINES}
            row["triggered_z_q10_q50"] = np.round(np.quantile(z[truth], [0.1, 0.5]), 2).tolist()
        out[name] = row
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
