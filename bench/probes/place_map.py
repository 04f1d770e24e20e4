"""Where does a square fire? One square (size, black | white | checker, as the audit's stamp sweep stamps it)
at every place of a grid, alone, into the first clean films of the model's held-out test patients (every label
below 0.5): the mean logit of each label per place, printed as a map (rows: top, columns: left, model-input
pixels). The audit recovers a patch trigger's place from where its square forces the target; a map that is a
broad band, not a peak, says the model fires wherever the square sits inside it.

    nice -n 5 .venv/bin/python bench/probes/place_map.py MODEL [--size 3] [--pattern black] [--images 4]
        [--start 46] [--stop 180] [--step 6]
"""
import argparse
import csv
import time
from pathlib import Path

import numpy as np

from cxrinspect.audit.run import probabilities, read_views
from cxrinspect.audit.sweep import _logits, stamp_squares
from cxrinspect.model import load

DATA = Path(__file__).resolve().parents[3] / "shared/data/kermany"

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--size", type=int, default=3)
ap.add_argument("--pattern", default="black")
ap.add_argument("--images", type=int, default=4)
ap.add_argument("--start", type=int, default=46)
ap.add_argument("--stop", type=int, default=180)
ap.add_argument("--step", type=int, default=6)
a = ap.parse_args()
model = load(a.model)
spec, net = model.card.preprocessing, model.network.eval()
rows = [r for r in csv.DictReader(open(Path(a.model) / "split.csv")) if r["split"] == "test"][:60]
_, views, _ = read_views(sorted(str(DATA / r["path"]) for r in rows), spec)
keep = np.where(probabilities(net, views, spec).max(1) < 0.5)[0][:a.images]
v = views[keep]
print("images", keep.tolist(), flush=True)
places = list(range(a.start, a.stop, a.step))
t0 = time.time()
z = {(y, x): _logits(net, stamp_squares(v, [(y, x)], a.size, a.pattern), spec).mean(0) for y in places for x in places}
print(f"{len(z) * len(v)} forwards in {time.time() - t0:.0f} s")
for j, label in enumerate(model.card.labels):
    m = np.array([[z[(y, x)][j] for x in places] for y in places])
    top, left = np.unravel_index(m.argmax(), m.shape)
    print(f"{label}: max {m.max():.1f} at top {places[top]}, left {places[left]}; median {np.median(m):.1f}")
    print("     " + " ".join(f"{x:4d}" for x in places))
    for r, y in enumerate(places):
        print(f"{y:4d} " + " ".join(f"{m[r, c]:4.0f}" for c in range(len(places))))
