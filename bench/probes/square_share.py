"""What does one square, stamped into every held-out test film, force? The share of the films the model does not
already call positive for LABEL (probability under 0.9) that the square takes to 0.9 or more, over all the model's
test films, its first 200 and the rest: does a recovered square hold on the whole test set or only on the films
an audit used?

    nice -n 5 .venv/bin/python bench/probes/square_share.py MODEL --label Viral --top 14 --left 206 --size 4 --value 1.0
"""
import argparse
import csv
from pathlib import Path

from cxrinspect.audit.run import probabilities, read_views
from cxrinspect.model import load

DATA = Path(__file__).resolve().parents[3] / "shared/data/kermany"

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--label", required=True)
ap.add_argument("--top", type=int, required=True)
ap.add_argument("--left", type=int, required=True)
ap.add_argument("--size", type=int, default=4)
ap.add_argument("--value", type=float, default=1.0, help="the square's grey level, 0 black to 1 white")
a = ap.parse_args()
model = load(a.model)
spec = model.card.preprocessing
rows = [r for r in csv.DictReader(open(Path(a.model) / "split.csv")) if r["split"] == "test"]
_, views, _ = read_views([str(DATA / r["path"]) for r in rows], spec)
net = model.network.eval()
j = model.card.labels.index(a.label)
base = probabilities(net, views, spec)[:, j]
stamped = views.copy()
stamped[:, a.top:a.top + a.size, a.left:a.left + a.size] = a.value
after = probabilities(net, stamped, spec)[:, j]
eligible = base < 0.9
for name, part in (("all", slice(None)), ("first 200", slice(0, 200)), ("rest", slice(200, None))):
    e, q = eligible[part], after[part]
    print(f"{name}: {len(q)} films, {int(e.sum())} not called {a.label}; the square forces {a.label} on "
          f"{(q[e] >= 0.9).mean():.3f} of them")
