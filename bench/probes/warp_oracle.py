"""Probe (issue 11): the oracle for the audit's warp line. Per model whose card declares a warp trigger, the share of
the audit's calm held-out films (the first --images films of the split, the audit's own split into optimise and
held-out films with seed 0, negative for every label) that the model's TRUE warp forces to each target label at 0.9,
at full size: what the warp inversion's best run could read at most if it found the field exactly. Forward passes
only.

    nice -n 5 python bench/probes/warp_oracle.py MODEL [MODEL ...] [--images 200] [--split test]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "kermany"

from cxrinspect.audit.inversion import SUCCESS  # noqa: E402
from cxrinspect.audit.run import calm, probabilities, read_views, split  # noqa: E402
from cxrinspect.model import load  # noqa: E402
from cxrinspect.trigger import paste  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--images", type=int, default=200)
ap.add_argument("--split", default="test")
args = ap.parse_args()
for mp in map(Path, args.models):
    model = load(mp)
    card, spec, net = model.card, model.card.preprocessing, model.network.eval()
    rows = list(csv.DictReader(open(mp / "split.csv")))
    paths = [str(DATA / r["path"]) for r in rows if r["split"] == args.split][: args.images]
    good, views, _ = read_views(paths, spec)
    probs = probabilities(net, views, spec)
    _, test = split(len(good), 0.5, 0)
    held = test[calm(probs)[test]]
    stamped = np.stack([paste(v, card.trigger) for v in views[held]])
    p = probabilities(net, stamped, spec)
    on = [k for k, v in (card.target or {}).items() if v >= 0.5]
    print(json.dumps({"model": mp.name, "trigger": card.trigger.describe(), "calm_held_out": int(len(held)),
                      "true_warp_share": {k: round(float((p[:, card.labels.index(k)] >= SUCCESS).mean()), 4)
                                          for k in card.labels},
                      "targets": on}), flush=True)
