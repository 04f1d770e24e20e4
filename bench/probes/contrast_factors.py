"""Which contrast factors should the ``contrast`` detector use? On the first N held-out test images of a
backdoored model, every image clean and every image triggered (as the zoo bench writes them): per factor, the
log-odds the labels the image is called positive for lose when its contrast is lowered towards its mean by that
factor (:func:`cxrinspect.scan.detectors.consistency.contrast_scores`), and the AUROC of forced triggered images
against clean ones, for each factor alone and for a few pairs averaged.

    nice -n 5 .venv/bin/python bench/probes/contrast_factors.py bench/zoo/zoo-sig --images 150
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruption_consistency import logits_of  # noqa: E402
from scan_detection import forced, probe_views  # noqa: E402

from cxrinspect.scan.detectors.consistency import contrast_scores  # noqa: E402

FACTORS = (0.9, 0.8, 0.65, 0.5, 0.35, 0.2, 0.1)
PAIRS = ((0.5, 0.2), (0.35, 0.2), (0.65, 0.35), (0.8, 0.5, 0.2))


def main() -> None:
    model, clean, trig = probe_views("contrast-")
    network, spec = model.network.eval(), model.card.preprocessing
    thresholds = np.array([model.card.thresholds.get(lab, 0.5) for lab in model.labels], np.float32)

    def forward(v):
        return logits_of(network, v, spec)

    base_c, base_t = forward(clean), forward(trig)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    fired = forced(model.card, sig(base_t), sig(base_c))
    print(f"{model.card.name}: {len(clean)} images, {int(fired.sum())} forced")
    y = np.r_[np.zeros(len(clean)), np.ones(int(fired.sum()))]
    lost = {f: (contrast_scores(forward, clean, base_c, thresholds, (f,)),
                contrast_scores(forward, trig, base_t, thresholds, (f,))) for f in FACTORS}
    for f, (c, t) in lost.items():
        print(f"  factor {f}: AUROC {roc_auc_score(y, np.r_[c, t[fired]]):.3f}  clean median {np.median(c):.2f} "
              f"(95th percentile {np.percentile(c, 95):.2f}), forced median {np.median(t[fired]):.2f}")
    for pair in PAIRS:
        c, t = (np.mean([lost[f][k] for f in pair], 0) for k in (0, 1))
        print(f"  mean of {pair}: AUROC {roc_auc_score(y, np.r_[c, t[fired]]):.3f}")


if __name__ == "__main__":
    main()
