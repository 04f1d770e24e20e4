"""Would distilling masks for more candidates confirm the forced images the box check missed? On a scan's
folder: distil + mask check for the triggered images that were not confirmed, and for the N most suspicious
clean images that were checked and not confirmed (false-alarm risk)."""
import sys, os, csv
import numpy as np
from cxrinspect.model import load as load_model
from cxrinspect.imaging import load
from cxrinspect.model.preprocess import model_view
from cxrinspect.inference.predictor import Predictor
from cxrinspect.scan import Scanner
from cxrinspect.scan.detectors.distill import kept, mask_evidence
from cxrinspect.scan.verification import verify_mask
from cxrinspect.scan.run import MASK_MAX
model_dir, scan_dir, nclean = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = load_model(model_dir); pred = Predictor(m, device="cpu", backend="torch")
sc = Scanner(m, method="distill", device="cpu")
rows = list(csv.DictReader(open(os.path.join(scan_dir, "ranking.csv"))))
trig = [r for r in rows if "triggered" in os.path.realpath(r["path"]) and r["verdict"] != "trigger"]
clean = [r for r in rows if "triggered" not in os.path.realpath(r["path"]) and r["verdict"] != "trigger"][:nclean]
for kind, sel in (("triggered", trig), ("clean", clean)):
    views = np.stack([model_view(load(r["path"]), m.card.preprocessing) for r in sel])
    masks = np.concatenate([sc.distil(views[s:s + 8]) for s in range(0, len(views), 8)])
    res = []
    for r, v, mk in zip(sel, views, masks):
        hide = kept(mk); ev = mask_evidence(mk)
        if 0 < hide.mean() <= MASK_MAX:
            c = verify_mask(v, hide, m.card.preprocessing, pred.probabilities, m.card.labels)
            res.append((r["rank"], round(ev["kept"], 4), c["logit_drop"], c["collapsed"]))
        else:
            res.append((r["rank"], round(ev["kept"], 4), None, False))
    print(kind, len(sel), "collapsed with the mask:", sum(x[3] for x in res))
    print("  ", res)
