"""Would hiding a larger box confirm the forced images the check missed, and what does it do to clean images?
Per checked image of a scan (ranking.csv): the check as the scan ran it, and with the box grown to at least
SxS around the hotspot's centre."""
import sys, os, csv
import numpy as np
from cxrinspect.model import load as load_model
from cxrinspect.imaging import load
from cxrinspect.model.preprocess import model_view
from cxrinspect.inference.predictor import Predictor
from cxrinspect.scan.verification import verify
model_dir, scan_dir = sys.argv[1], sys.argv[2]
sizes = [int(s) for s in sys.argv[3].split(",")]
m = load_model(model_dir); pred = Predictor(m, device="cpu", backend="torch")
rows = [r for r in csv.DictReader(open(os.path.join(scan_dir, "ranking.csv"))) if r["evidence"] == "box"]
out = []
for r in rows:
    trig = "triggered" in os.path.realpath(r["path"])
    view = model_view(load(r["path"]), m.card.preprocessing)
    t, l, b, rr = (int(r[k]) for k in ("hotspot_top", "hotspot_left", "hotspot_bottom", "hotspot_right"))
    cy, cx = (t + b) / 2, (l + rr) / 2
    res = [float(r["logit_drop_when_masked"]), r["collapsed"] == "True"]
    for s in sizes:
        box = (int(round(cy - s / 2)), int(round(cx - s / 2)), int(round(cy + s / 2)), int(round(cx + s / 2)))
        box = (max(0, box[0]), max(0, box[1]), min(224, box[2]), min(224, box[3]))
        v = verify(view, box, m.card.preprocessing, pred.probabilities, m.card.labels, margin=0)
        res += [v["logit_drop"], v["collapsed"]]
    out.append((trig, r["rank"], res))
for trig in (True, False):
    sel = [o for o in out if o[0] == trig]
    print("triggered" if trig else "clean", len(sel), "collapsed now", sum(o[2][1] for o in sel),
          *(f"| {s}x{s}: collapsed {sum(o[2][3 + 2 * i] for o in sel)}, max drop {max(o[2][2 + 2 * i] for o in sel):.2f}" for i, s in enumerate(sizes)))
    if not trig:
        print("  clean top drops now", sorted(round(o[2][0], 2) for o in sel)[-5:],
              *(f"{s}: {sorted(round(o[2][2 + 2 * i], 2) for o in sel)[-5:]}" for i, s in enumerate(sizes)))
    else:
        for o in sel:
            if not o[2][1]: print("  missed", o[1], [round(x, 2) if isinstance(x, float) else x for x in o[2]])
