"""Which rule should combine ``auto``'s detectors? For one rate of a detection bench run with all four
detectors (its ``--work`` folder and its ``--records`` CSV): the ranking each rule gives from the recorded
robust z-scores of the gradient map, psc, contrast and mirror, confirmed images first as the scan ranks them (the
checks are the recorded ones, so an image a rule would bring to the check is not checked here). AUROC /
precision at k over the forced images (:func:`scan_detection.forced`) and over all triggered ones.

Rules: Stouffer over all four (the scan's), over the three before mirror, the sum of the two largest z-scores
over the square root of two (an image a trigger lights up on the detectors of its kind, not on all four), and
the largest z, the sum of the positive z-scores over two, and the larger of two Stouffer sums (the three
before mirror, or the two that see a patch, against the two global consistency tests).

    nice -n 5 .venv/bin/python bench/probes/combine_rules.py bench/zoo/zoo-sig /tmp/bench13-sig 0.1 \
        runs/zoo13/scan_detection_sig.csv
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from combine_contrast import recorded_run  # noqa: E402
from scan_detection import quality  # noqa: E402

from cxrinspect.scan.run import robust_z  # noqa: E402


def main() -> None:
    rate = sys.argv[3]
    model, rows, _, _, _, truth, fired, confirmed = recorded_run(*sys.argv[1:5])
    keep = ~truth | fired
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
                 np.maximum(z[:, :3].sum(1) / np.sqrt(3), z[:, 2:].sum(1) / np.sqrt(2)),
             "larger of Stouffer(gradient, psc), Stouffer(contrast, mirror)":
                 np.maximum(z[:, :2].sum(1) / np.sqrt(2), z[:, 2:].sum(1) / np.sqrt(2))}
    for name, s in rules.items():
        if name != "recorded ranking":
            s = np.where(confirmed, 1e6, 0) + s
        q, qa = quality(fired[keep], s[keep]), quality(truth, s)
        print(f"  {name:36s} forced {q['auroc']:.3f} / {q['precision_at_k']:.2f}   all {qa['auroc']:.3f} / "
              f"{qa['precision_at_k']:.2f}", flush=True)


if __name__ == "__main__":
    main()
