"""Does the mask's grid decide whether Neural Cleanse finds a small patch trigger on a real DenseNet? One
candidate (label:on) of MODEL, optimised on 100 of its held-out test images and checked on the other 100, for
each grid given: every 25 steps the smallest successful mask's L1, its box at 0.5 and its held-out success.

    nice -n 5 .venv/bin/python bench/probes/audit_grid.py MODEL LABEL [--grids 56,28] [--steps 100]
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from cxrinspect.audit.inversion import Candidate, PatchInversion, mask_box, stamp_views
from cxrinspect.audit.run import probabilities, read_views, split
from cxrinspect.model import load

DATA = Path(__file__).resolve().parents[3] / "shared/data/kermany"

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("label")
ap.add_argument("--grids", default="56,28")
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--init", type=float, default=None, help="initial mask logit (inversion.MASK_INIT)")
ap.add_argument("--lr", type=float, default=None, help="Adam's step (inversion.LR)")
ap.add_argument("--arm", type=int, default=0, help="mini-batch seed stream, as the audit's arm number")
a = ap.parse_args()
import cxrinspect.audit.inversion as inversion  # noqa: E402
if a.init is not None:
    inversion.MASK_INIT = a.init
if a.lr is not None:
    inversion.LR = a.lr
model = load(a.model)
net, spec = model.network.eval(), model.card.preprocessing
for p in net.parameters():
    p.requires_grad_(False)
rows = [r for r in csv.DictReader(open(Path(a.model) / "split.csv")) if r["split"] == "test"][:200]
paths, views, _ = read_views(sorted(str(DATA / r["path"]) for r in rows), spec)
probs = probabilities(net, views, spec)
opt, test = split(len(views), 0.5, 0)
c = Candidate(a.label, model.card.labels.index(a.label), "on")
e = c.eligible(probs)
o, t = opt[e[opt]], test[e[test]]
x = torch.from_numpy(views)
print(json.dumps({"model": model.card.name, "candidate": c.name, "optimise": len(o), "held_out": len(t),
                  "init": inversion.MASK_INIT, "lr": inversion.LR, "arm": a.arm}), flush=True)
for g in [int(v) for v in a.grids.split(",")]:
    inv = PatchInversion(c, spec.input_size, g)
    for s in range(a.steps):
        pick = np.random.default_rng([0, a.arm, s]).choice(o, min(8, len(o)), replace=False)
        info = inv.step(net, x[np.sort(pick)], spec)
        if (s + 1) % 25 == 0:
            mask, pattern = inv.best()
            q = probabilities(net, stamp_views(views[t], mask, pattern).numpy(), spec)[:, c.index]
            box, n = mask_box(mask)
            print(json.dumps({"grid": g, "step": s + 1, "best_l1": None if not inv.reached else round(inv.best_l1, 1),
                              "box": box, "pixels": n, "heldout": round(float(c.succeeded(q).mean()), 3),
                              "cost": inv.cost, "last": {k: round(v, 3) for k, v in info.items()}}), flush=True)
    np.savez(f"runs/probe-grid-{model.card.name}-{c.label}-{g}-{inversion.MASK_INIT}-{inversion.LR}-{a.arm}.npz", mask=mask, pattern=pattern)
