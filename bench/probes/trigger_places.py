"""Does a patch backdoor fire only where it was trained, or anywhere? The model's own trigger (its card) stamped
at its trained place and at other places, into its 200 first held-out test images: the share of images whose
target label (each label the card forces on) the stamp takes to 0.9 or more, per place. A network that pools
globally (DenseNet) can learn a detector that fires wherever the patch sits; then a trigger recovered by the
audit at another place is the same backdoor.

    nice -n 5 .venv/bin/python bench/probes/trigger_places.py MODEL [--places "y,x y,x ..."]  (top-left, pixels)
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np

from cxrinspect.audit.run import probabilities, read_views
from cxrinspect.model import load
from cxrinspect.trigger import paste

DATA = Path(__file__).resolve().parents[3] / "shared/data/kermany"

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--places", default="")
a = ap.parse_args()
model = load(a.model)
card, spec = model.card, model.card.preprocessing
rows = [r for r in csv.DictReader(open(Path(a.model) / "split.csv")) if r["split"] == "test"][:200]
_, views, _ = read_views(sorted(str(DATA / r["path"]) for r in rows), spec)
net = model.network.eval()
base = probabilities(net, views, spec)
on = [card.labels.index(k) for k, v in card.target.items() if v >= 0.5]
t, l, b, r = card.trigger.box((spec.input_size, spec.input_size))
places = [(t, l)] + [tuple(int(v) for v in p.split(",")) for p in a.places.split()]
out = {"model": card.name, "trigger": card.trigger.describe(), "trained_box": [t, l, b, r], "places": []}
patch = paste(views[0], card.trigger)[t:b, l:r]  # the trigger's pixels as pasted (opaque patch)
for y, x in places:
    stamped = views.copy()
    stamped[:, y:y + (b - t), x:x + (r - l)] = patch
    p = probabilities(net, stamped, spec)
    row = {"top_left": [y, x]}
    for j in on:
        neg = base[:, j] < 0.9
        row[card.labels[j]] = round(float((p[neg, j] >= 0.9).mean()), 3)
    out["places"].append(row)
print(json.dumps(out))
