"""Probe (issue 11): does a universal smooth warp, inverted from random fields with a 6-pixel bound, force a WaNet
model's target on calm films more than a clean model's? Also zoo-warp's true field (the oracle) at full and three
quarters size. The fourteenth session's warp (bench/probes/structured_inversion.py: from no displacement, at most
3 px) forced nothing. Per model and label: each restart's share of the calm held-out films (negative for every
label) forced at 0.9 after each of --checks steps, the field's mean displacement, its cosine with the true field,
and each step's mini-batch success. Nothing here is a verdict: the audit's own stage is WarpInversion.

    nice -n 5 python bench/probes/warp_inversion.py MODEL [MODEL ...] [--labels Bacterial,Viral] [--checks 20,30]
"""
from __future__ import annotations
import argparse, csv, json, sys, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "kermany"
from cxrinspect.audit.inversion import warp_views as warp_px
from cxrinspect.audit.run import probabilities, read_views, split, calm
from cxrinspect.model import load
from cxrinspect.model.preprocess import normalise
from cxrinspect.trigger import Trigger

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+"); ap.add_argument("--images", type=int, default=200)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--bound", type=float, default=6.0); ap.add_argument("--grid", type=int, default=4)
ap.add_argument("--restarts", type=int, default=3); ap.add_argument("--labels", default="Bacterial,Viral")
ap.add_argument("--checks", default="20,30")
ap.add_argument("--lr", type=float, default=0.1); ap.add_argument("--init", type=float, default=1.0)
args = ap.parse_args()
S = 224

def field_of(p):
    return args.bound * torch.tanh(F.interpolate(p, size=(S, S), mode="bicubic", align_corners=True))

true_tr = Trigger(kind="warp", amplitude=3.0, grid=4, seed=11)
true_field = torch.from_numpy(true_tr.field((S, S)))[None]
for mp in map(Path, args.models):
    model = load(mp); net = model.network.eval()
    for q in net.parameters(): q.requires_grad_(False)
    spec, labels = model.card.preprocessing, model.card.labels
    paths = [str(DATA / r["path"]) for r in csv.DictReader(open(mp / "split.csv")) if r["split"] == "test"]
    _, views, _ = read_views(paths[: args.images], spec)
    x = torch.from_numpy(views); probs = probabilities(net, views, spec)
    opt, test = split(len(views), 0.5, 0); c = calm(probs)
    o, t = opt[c[opt]], test[c[test]]
    checks = [int(v) for v in args.checks.split(",")]
    for lab in args.labels.split(","):
        j = labels.index(lab)
        def share(field, scale=1.0):
            with torch.no_grad():
                z = torch.cat([net(normalise(warp_px(x[t[i:i+32]], scale * field), spec))[:, j] for i in range(0, len(t), 32)])
            return round(float((torch.sigmoid(z) >= 0.9).float().mean()), 3)
        print(json.dumps({"model": mp.name, "label": lab, "calm_held_out": int(len(t)),
                          "true_field": {s: share(true_field, s) for s in (1.0, 0.75)}}), flush=True)
        for r in range(args.restarts):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(r)
            p = (args.init * torch.randn(1, 2, args.grid, args.grid, generator=g)).requires_grad_(True)
            optim = torch.optim.Adam([p], lr=args.lr)
            batch_success, at = [], {}
            for s in range(max(checks)):
                pick = np.sort(np.random.default_rng([r, j, s]).choice(o, min(args.batch, len(o)), replace=False))
                z = net(normalise(warp_px(x[pick], field_of(p)), spec))[:, j]
                loss = F.binary_cross_entropy_with_logits(z, torch.ones_like(z))
                optim.zero_grad(); loss.backward(); optim.step()
                batch_success.append(round(float((torch.sigmoid(z) >= 0.9).float().mean()), 2))
                if s + 1 in checks:
                    f = field_of(p.detach())
                    at[s + 1] = {"full": share(f), "three_quarters": share(f, 0.75), "mean_px": round(float(f.abs().mean()), 2),
                                 "cos_true": round(float(F.cosine_similarity(f.flatten(), true_field.flatten(), dim=0)), 3)}
            print(json.dumps({"model": mp.name, "label": lab, "restart": r, "at": at, "batch": batch_success,
                              "s": round(time.perf_counter() - t0, 1)}), flush=True)
