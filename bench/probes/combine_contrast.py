"""Would adding the ``contrast`` detector to ``auto``'s combination keep a finished bench's ranking, and which
combination? For one rate of a detection bench run before ``contrast`` existed (its ``--work`` folder and its
``--records`` CSV): the contrast score of every image of that folder, then the ranking by each combination of the
robust z-scores (the recorded gradient and psc scores and the new one), confirmed images first as the scan ranks
them (the checks are the recorded ones, so an image a new ranking would bring to the check is not checked).
AUROC / precision at k over the forced images (:func:`scan_detection.forced`) and over all triggered ones.

    nice -n 5 .venv/bin/python bench/probes/combine_contrast.py bench/zoo/zoo-electrode /tmp/bench12-electrode-c 0.1 \
        runs/zoo12/scan_detection_electrode_10pc.csv
"""
import csv
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruption_consistency import logits_of  # noqa: E402
from scan_detection import forced, quality, test_paths, views_of  # noqa: E402

from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.scan.detectors.consistency import contrast_scores  # noqa: E402
from cxrinspect.scan.run import robust_z  # noqa: E402


def main() -> None:
    model_dir, work, rate, records = sys.argv[1:5]
    torch.set_num_threads(2)
    model = load_model(model_dir)
    network, spec = model.network.eval(), model.card.preprocessing
    thresholds = np.array([model.card.thresholds.get(lab, 0.5) for lab in model.labels], np.float32)
    rows = [r for r in csv.DictReader(open(records)) if float(r["rate"]) == float(rate)]

    def forward(v):
        return logits_of(network, v, spec)

    views = views_of([str(Path(work) / f"images-{float(rate):g}" / r["file"]) for r in rows], spec)
    logits = forward(views)
    contrast = contrast_scores(forward, views, logits, thresholds)
    sources, _ = test_paths(model)
    without = forward(views_of([sources[int(r["file"][:4])] for r in rows], spec))  # file names start with the index
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    truth = np.array([r["triggered"] == "1" for r in rows])
    fired = truth & forced(model.card, sig(logits), sig(without))
    keep = ~truth | fired
    confirmed = np.array([r["verdict"] == "trigger" for r in rows])
    zg, zp, zc = robust_z([float(r["score"]) for r in rows]), robust_z([float(r["psc"]) for r in rows]), robust_z(contrast)
    print(f"{model.card.name} {rate}: {truth.sum()} triggered, {fired.sum()} forced, {(confirmed & fired).sum()} forced "
          f"and {(confirmed & ~truth).sum()} clean confirmed")
    variants = {"recorded ranking": -np.array([float(r["rank"]) for r in rows]),
                "Stouffer(gradient, psc)": (zg + zp) / np.sqrt(2),
                "Stouffer(gradient, psc, contrast)": (zg + zp + zc) / np.sqrt(3),
                "max(Stouffer(gradient, psc), contrast)": np.maximum((zg + zp) / np.sqrt(2), zc),
                "contrast alone": zc}
    for name, s in variants.items():
        if name not in ("recorded ranking", "contrast alone"):
            s = np.where(confirmed, 1e6, 0) + s
        q, qa = quality(fired[keep], s[keep]), quality(truth, s)
        print(f"  {name:40s} forced {q['auroc']:.3f} / {q['precision_at_k']:.2f}   all {qa['auroc']:.3f} / "
              f"{qa['precision_at_k']:.2f}")


if __name__ == "__main__":
    main()
