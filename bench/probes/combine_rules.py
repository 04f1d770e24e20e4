"""Which rule should combine ``auto``'s detectors? For one rate of a detection bench run with all four
detectors (its ``--work`` folder and its ``--records`` CSV): the ranking each rule gives from the recorded
robust z-scores of the gradient map, psc, contrast and mirror, confirmed images first as the scan ranks them (the
checks are the recorded ones, so an image a rule would bring to the check is not checked here). AUROC /
precision at k over the forced images (:func:`scan_detection.forced`) and over all triggered ones.

Rules: Stouffer over all four (the scan's), over the three before mirror, the sum of the two largest z-scores
over the square root of two (an image a trigger lights up on the detectors of its kind, not on all four), and
the largest z, the sum of the positive z-scores over two, and the larger of two Stouffer sums (the three
before mirror; the two global consistency tests).

    nice -n 5 .venv/bin/python bench/probes/combine_rules.py bench/zoo/zoo-sig /tmp/bench13-sig 0.1 \
        runs/zoo13/scan_detection_sig.csv
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
from cxrinspect.scan.run import robust_z  # noqa: E402


def main() -> None:
    model_dir, work, rate, records = sys.argv[1:5]
    torch.set_num_threads(2)
    model = load_model(model_dir)
    network, spec = model.network.eval(), model.card.preprocessing
    rows = [r for r in csv.DictReader(open(records)) if float(r["rate"]) == float(rate)]
    views = views_of([str(Path(work) / f"images-{float(rate):g}" / r["file"]) for r in rows], spec)
    sources, _ = test_paths(model)
    without = logits_of(network, views_of([sources[int(r["file"][:4])] for r in rows], spec), spec)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    truth = np.array([r["triggered"] == "1" for r in rows])
    fired = truth & forced(model.card, sig(logits_of(network, views, spec)), sig(without))
    keep = ~truth | fired
    confirmed = np.array([r["verdict"] == "trigger" for r in rows])
    z = np.stack([robust_z([float(r[k]) for r in rows]) for k in ("score", "psc", "contrast", "mirror")], 1)
    print(f"{model.card.name} {rate}: {truth.sum()} triggered, {fired.sum()} forced, {(confirmed & fired).sum()} forced "
          f"and {(confirmed & ~truth).sum()} clean confirmed")
    top2 = np.sort(z, 1)[:, -2:].sum(1) / np.sqrt(2)
    rules = {"recorded ranking": -np.array([float(r["rank"]) for r in rows]),
             "Stouffer(all four)": z.sum(1) / 2,
             "Stouffer(gradient, psc, contrast)": z[:, :3].sum(1) / np.sqrt(3),
             "Stouffer(two largest)": top2,
             "largest z": z.max(1),
             "Stouffer(positive z only)": np.clip(z, 0, None).sum(1) / 2,
             "larger of Stouffer(g, psc, contrast), Stouffer(contrast, mirror)":
                 np.maximum(z[:, :3].sum(1) / np.sqrt(3), z[:, 2:].sum(1) / np.sqrt(2))}
    for name, s in rules.items():
        if name != "recorded ranking":
            s = np.where(confirmed, 1e6, 0) + s
        q, qa = quality(fired[keep], s[keep]), quality(truth, s)
        print(f"  {name:36s} forced {q['auroc']:.3f} / {q['precision_at_k']:.2f}   all {qa['auroc']:.3f} / "
              f"{qa['precision_at_k']:.2f}", flush=True)


if __name__ == "__main__":
    main()
