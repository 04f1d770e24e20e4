"""Can a folder prove a whole-image trigger by transplanting it? A trigger of the whole image (a sinusoid, a
blended pattern) leaves nothing to hide, so the per-image check never confirms one. But it is the same pattern in
every image it was pasted into: the mean of the best-ranked images minus the mean of the folder's least
suspicious ones keeps it (scaled by the share of triggered images among the candidates) while their anatomy
averages out. Added to other films of the folder, does that difference force the label the candidates share, far
more often than the difference of a random group of as many films does?

The K best-ranked images the check did not confirm are the candidates; the least suspicious half of the folder the
calm films (the reference mean, and the films the difference is added to). Per label and scale of the difference:
the share of the calm films called negative for the label that it forces on (>= the card's threshold, up by >= 2.5
log-odds), for the candidates, for random groups of K films (the null), for the calm films whose logits match the
candidates' (the null for what their labels look like: the candidates' mean differs from the folder's by that as
well as by any shared pattern) and, in a bench folder, for the truly triggered ones among the candidates.

    # a finished detection bench rate (its --work folder and --records CSV)
    nice -n 5 .venv/bin/python bench/probes/shared_pattern.py bench/zoo/zoo-sig --bench runs/bench14-sig 0.1 \
        runs/zoo14/scan_detection_sig.csv [--k 20] [--scales 1,2] [--null 10]
    # any finished scan (its --out folder; no truth known): a clean model's scan of clean films, the false alarm
    nice -n 5 .venv/bin/python bench/probes/shared_pattern.py resources/models/kermany-densenet121-clean \
        --scan runs/clean-auto
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from combine_contrast import recorded_run  # noqa: E402
from corruption_consistency import logits_of  # noqa: E402
from scan_detection import quality, views_of  # noqa: E402

from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.scan.run import robust_z  # noqa: E402
from cxrinspect.scan.transplant import matched  # noqa: E402

RISE = 2.5


def forced_share(forward, receivers, logits, thresholds, pattern, scale) -> np.ndarray:
    """Per label: the share of ``receivers`` called negative for it that ``pattern`` x ``scale`` forces on."""
    after = forward(np.clip(receivers + scale * pattern[None], 0, 1))
    t = np.log(thresholds) - np.log1p(-thresholds)
    negative = logits < t
    hit = negative & (after >= t) & (after - logits >= RISE)
    return hit.sum(0) / np.maximum(negative.sum(0), 1)


def scanned_run(model_dir: str, scan: str):
    """A finished scan read back as :func:`recorded_run` reads a bench rate (no truth: nothing triggered)."""
    torch.set_num_threads(2)
    model = load_model(model_dir)
    network, spec = model.network.eval(), model.card.preprocessing
    rows = list(csv.DictReader(open(Path(scan) / "ranking.csv")))
    views = views_of([r["path"] for r in rows], spec)
    forward = lambda v: logits_of(network, v, spec)  # noqa: E731
    none = np.zeros(len(rows), bool)
    return model, rows, views, forward, forward(views), none, none, np.array([r["verdict"] == "trigger" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--bench", nargs=3, metavar=("WORK", "RATE", "RECORDS"))
    ap.add_argument("--scan")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--scales", default="1,2")
    ap.add_argument("--null", type=int, default=10)
    a = ap.parse_args()
    run = recorded_run(a.model, *a.bench) if a.bench else scanned_run(a.model, a.scan)
    model, rows, views, forward, logits, truth, fired, confirmed = run
    thresholds = np.array([model.card.thresholds.get(lab, 0.5) for lab in model.labels], np.float64)
    order = np.argsort([float(r["rank"]) for r in rows])
    candidates = [i for i in order if not confirmed[i]][:a.k]
    calm = order[len(order) // 2:]
    base = views[calm].mean(0)
    c_views, c_logits = views[calm], logits[calm]
    t = np.log(thresholds) - np.log1p(-thresholds)
    print(f"{model.card.name} {a.bench[1] if a.bench else a.scan}: {len(rows)} images, {truth.sum()} triggered, "
          f"{fired.sum()} forced; {len(candidates)} candidates ({truth[candidates].sum()} triggered, "
          f"{fired[candidates].sum()} forced); {len(calm)} calm films ({truth[calm].sum()} triggered), negative: "
          + ", ".join(f"{lab} {n}" for lab, n in zip(model.labels, (c_logits < t).sum(0))))
    rng = np.random.default_rng(0)
    groups = {"candidates": candidates, "matched calm films": matched(logits, candidates, list(calm))}
    if truth.any():
        groups["triggered among candidates"] = [i for i in candidates if truth[i]]
        groups["all triggered (oracle)"] = list(np.flatnonzero(truth))
    for scale in [float(s) for s in a.scales.split(",")]:
        print(f"scale {scale:g}")
        for name, g in groups.items():
            if len(g):
                s = forced_share(forward, c_views, c_logits, thresholds, views[g].mean(0) - base, scale)
                print(f"  {name:28s} " + "  ".join(f"{lab} {v:.2f}" for lab, v in zip(model.labels, s)), flush=True)
        if scale == 1:  # the pattern taken out of every image: which ones lose the label it forces most?
            pattern = views[candidates].mean(0) - base
            share = forced_share(forward, c_views, c_logits, thresholds, pattern, 1)
            j = int(np.argmax(share))
            drop = logits[:, j] - forward(np.clip(views - pattern[None], 0, 1))[:, j]
            lost = (logits[:, j] >= t[j]) & (logits[:, j] - drop < t[j]) & (drop >= RISE)
            clean = ~truth
            print(f"  taken out ({model.labels[j]}): lost by {lost[truth].sum()} of {truth.sum()} triggered, "
                  f"{lost[fired].sum()} of {fired.sum()} forced, {lost[clean].sum()} of {clean.sum()} clean; drop "
                  f"quantiles clean q50 {np.median(drop[clean]):.2f} q95 {np.quantile(drop[clean], .95):.2f} "
                  f"max {drop[clean].max():.2f}"
                  + (f"; forced: q10 {np.quantile(drop[fired], .1):.2f} q50 {np.median(drop[fired]):.2f}, AUROC / "
                     "P@k {auroc:.3f} / {precision_at_k:.2f}".format(
                         **quality(fired[clean | fired], drop[clean | fired]))
                     if fired.any() else ""), flush=True)
            if fired.any() and "suspicion" in rows[0]:  # the drop as a fifth z-score in the scan's Stouffer sum
                zs = np.array([float(r["suspicion"]) for r in rows])
                k = np.isfinite(zs)
                both = np.where(confirmed, 1e6, 0) + (zs * 2 + robust_z(drop)) / np.sqrt(5)
                keep = clean | fired
                print("  ranking with the drop added to the four z-scores, forced: AUROC / P@k "
                      "{auroc:.3f} / {precision_at_k:.2f}".format(**quality(fired[keep], both[keep]))
                      + "; all triggered: {auroc:.3f} / {precision_at_k:.2f}".format(**quality(truth, both))
                      + f" ({k.sum()} suspicion values)", flush=True)
        if not a.null:
            continue
        null = np.array([forced_share(forward, c_views, c_logits, thresholds,
                                      views[rng.choice(len(rows), a.k, replace=False)].mean(0) - base, scale)
                         for _ in range(a.null)])
        print(f"  {'null (random groups)':28s} " + "  ".join(
            f"{lab} {m:.2f} (max {x:.2f})" for lab, m, x in zip(model.labels, null.mean(0), null.max(0))), flush=True)


if __name__ == "__main__":
    main()
