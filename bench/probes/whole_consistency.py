"""Probe (issue 11): is there a whole-image statistic less tied to the optimiser's effort than the share forced
within 25 steps?

The audit's whole-image stage (``run._whole_image``) keeps the mean share of three runs, and a clean model's share
rises to 95% with 75 steps; the line reads ease, not possibility. This probe repeats the stage exactly (same calm
films, same mini-batch streams, so run r's share equals the audit's) and keeps every run's change, to measure per
model and label driven on:

- ``share``: the three runs' shares of calm held-out films forced to >= 0.9 (the audit's figure);
- ``agree``: the mean pairwise cosine of the three runs' changes (does every run find the same pattern?);
- ``dose``: each run's share forced by its change scaled by 0.5, 0.625, 0.75 and 0.875 (a learned trigger's response
  may saturate where an adversarial push grows with its size);
- ``rise``: the median logit rise over calm held-out films with the best run's change;
- ``cross``: every model's changes are saved (``--out``/deltas.npz) so that a change can be tried on other models.

    nice -n 5 python bench/probes/whole_consistency.py MODEL [MODEL ...] [--images 200] [--split test] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "kermany"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--out", default="runs/whole-consistency")
    ap.add_argument("--labels", default="", help="comma-separated labels to drive on (default: every label)")
    args = ap.parse_args()

    from cxrinspect.audit.inversion import GLOBAL_RESTARTS, Candidate, GlobalInversion
    from cxrinspect.audit.run import BATCH, MIN_IMAGES, calm, probabilities, read_views, split
    from cxrinspect.model import load

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for mp in map(Path, args.models):
        t0 = time.perf_counter()
        model = load(mp)
        network = model.network.eval().to(memory_format=torch.channels_last)
        for p in network.parameters():
            p.requires_grad_(False)
        spec, labels = model.card.preprocessing, model.card.labels
        rows = list(csv.DictReader(open(mp / "split.csv")))
        paths = [str(DATA / r["path"]) for r in rows if r["split"] == args.split][: args.images]
        good, views, _ = read_views(sorted(paths), spec)
        probs = probabilities(network, views, spec)
        opt, test = split(len(good), 0.5, args.seed)
        quiet = calm(probs)
        x_all = torch.from_numpy(views)
        deltas, result = {}, {"model": mp.name, "images": len(good), "split": args.split, "labels": {}}
        for k, lab in enumerate(labels):
            if args.labels and lab not in args.labels.split(","):
                continue
            c = Candidate(lab, k, "on")
            e = c.eligible(probs)
            o, t = opt[e[opt] & quiet[opt]], test[e[test] & quiet[test]]
            if len(o) < MIN_IMAGES or len(t) < MIN_IMAGES:
                continue
            base = probabilities(network, views[t], spec)[:, k]
            runs = []
            for r in range(GLOBAL_RESTARTS):
                g = GlobalInversion(c, spec.input_size, "stripes")
                for s in range(args.steps):
                    pick = np.random.default_rng([args.seed, k, 10_000 + s + 100_000 * r]).choice(
                        o, min(BATCH, len(o)), replace=False)
                    g.step(network, x_all[np.sort(pick)], spec)
                d = g.delta().detach()[0, 0]
                with torch.no_grad():
                    q = probabilities(network, (torch.from_numpy(views[t]) + d).clamp(0, 1).numpy(), spec)[:, k]
                runs.append((d, q))
            shares = [float(c.succeeded(q).mean()) for _, q in runs]
            best = int(np.argmax(shares))
            d_best = runs[best][0]
            flat = [d.flatten() / d.norm() for d, _ in runs]
            agree = [float(flat[i] @ flat[j]) for i in range(len(flat)) for j in range(i + 1, len(flat))]
            dose = {}
            with torch.no_grad():
                for f in (0.5, 0.625, 0.75, 0.875):
                    per_run = [float(c.succeeded(probabilities(network, (torch.from_numpy(views[t]) + f * d).clamp(0, 1)
                                                               .numpy(), spec)[:, k]).mean()) for d, _ in runs]
                    dose[str(f)] = [round(x, 4) for x in per_run]
            logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))  # noqa: E731
            rise = float(np.median(logit(runs[best][1]) - logit(base)))
            result["labels"][lab] = {"held_out": int(len(t)), "shares": [round(s, 4) for s in shares],
                                     "share": round(float(np.mean(shares)), 4), "agree": [round(a, 3) for a in agree],
                                     "dose": dose, "rise": round(rise, 2)}
            for r, (d, _) in enumerate(runs):
                deltas[f"{lab}/{r}"] = d.numpy()
        result["seconds"] = round(time.perf_counter() - t0, 1)
        np.savez_compressed(out / f"{mp.name}-{args.images}-{args.split}.npz", **deltas)
        with open(out / "probe.jsonl", "a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
