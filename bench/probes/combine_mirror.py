"""Would a mirror-consistency score join ``auto``'s combination, and how? On N held-out test images spread over
the split, every image clean and every image triggered: each detector's score as the scanner computes it
(gradient-map compactness, psc, contrast) and the log-odds the image's positive labels lose when the film is
mirrored left-right; robust z-scores against the clean images (a folder is mostly clean), and the AUROC of the
forced triggered images against the clean ones for each detector alone and for Stouffer combinations. No check
runs here: these are the rankings before the counterfactual check.

    nice -n 5 .venv/bin/python bench/probes/combine_mirror.py bench/zoo/zoo-sig --images 150
"""
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_detection import forced, probe_views  # noqa: E402

from cxrinspect.scan import Scanner  # noqa: E402
from cxrinspect.scan.compactness import compactness  # noqa: E402
from cxrinspect.scan.detectors.consistency import contrast_scores, mirror_scores  # noqa: E402


def main() -> None:
    model, clean, trig = probe_views("mirror-")
    sc = Scanner(model, method="auto")
    sc.calibrate(clean[:32])

    def scores(views):
        out = {k: [] for k in ("gradient", "psc", "contrast", "mirror")}
        logits_all = []
        for s in range(0, len(views), 8):
            v = views[s:s + 8]
            logits, maps, _ = sc.logit_maps(v)
            probs = 1 / (1 + np.exp(-logits))
            out["gradient"] += [compactness(m).score for m in maps]
            if sc.psc is not None:
                out["psc"] += list(sc.psc.scores(sc._input(v), probs))
            out["contrast"] += list(contrast_scores(sc.logits, v, logits, sc.thresholds))
            out["mirror"] += list(mirror_scores(sc.logits, v, logits, sc.thresholds))
            logits_all.append(logits)
        return {k: np.array(v, np.float64) for k, v in out.items() if v}, np.concatenate(logits_all)

    sc_c, lc = scores(clean)
    sc_t, lt = scores(trig)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    fired = forced(model.card, sig(lt), sig(lc))
    print(f"{model.card.name}: {len(clean)} images, {int(fired.sum())} forced")
    if not fired.any():
        return
    y = np.r_[np.zeros(len(clean)), np.ones(int(fired.sum()))]
    z = {}
    for k in sc_c:
        med = np.median(sc_c[k])
        mad = max(1.4826 * np.median(np.abs(sc_c[k] - med)), 1e-6)
        z[k] = (np.r_[sc_c[k], sc_t[k][fired]] - med) / mad

    def show(name, s):
        k = int(fired.sum())
        top = np.argsort(-s, kind="stable")[:k]
        print(f"  {name:34s} AUROC {roc_auc_score(y, s):.3f}  P@k {y[top].mean():.2f}", flush=True)

    for k in z:
        show(k, z[k])
    names = list(z)
    for n in (2, 3, 4):
        for combo in combinations(names, n):
            show("stouffer " + "+".join(combo), sum(z[c] for c in combo) / np.sqrt(n))
    show("max z of all", np.max([z[c] for c in names], 0))


if __name__ == "__main__":
    main()
