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


def recorded_run(model_dir: str, work: str, rate: str, records: str):
    """A finished bench rate read back: ``(model, rows, views, forward, logits, truth, fired, confirmed)``; ``rows``
    are the records CSV's rows of that rate, ``views`` their files' model views, ``forward`` views -> logits, and
    ``truth``, ``fired`` and ``confirmed`` which rows were triggered, forced and confirmed."""
    torch.set_num_threads(2)
    model = load_model(model_dir)
    network, spec = model.network.eval(), model.card.preprocessing
    rows = [r for r in csv.DictReader(open(records)) if float(r["rate"]) == float(rate)]

    def forward(v):
        return logits_of(network, v, spec)

    views = views_of([str(Path(work) / f"images-{float(rate):g}" / r["file"]) for r in rows], spec)
    logits = forward(views)
    sources, _ = test_paths(model)
    without = forward(views_of([sources[int(r["file"][:4])] for r in rows], spec))  # file names start with the index
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    truth = np.array([r["triggered"] == "1" for r in rows])
    fired = truth & forced(model.card, sig(logits), sig(without))
    confirmed = np.array([r["verdict"] == "trigger" for r in rows])
    return model, rows, views, forward, logits, truth, fired, confirmed


def main() -> None:
    rate = sys.argv[3]
    model, rows, views, forward, logits, truth, fired, confirmed = recorded_run(*sys.argv[1:5])
    thresholds = np.array([model.card.thresholds.get(lab, 0.5) for lab in model.labels], np.float32)
    contrast = contrast_scores(forward, views, logits, thresholds)
    keep = ~truth | fired
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
