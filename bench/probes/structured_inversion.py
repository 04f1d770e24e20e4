"""Probe (issue 11): can a universal whole-image inversion shaped like the global triggers tell a model with a
SIG, blend or WaNet backdoor from a clean one, with no poisoned image?

The audit's whole-image inversion (``GlobalInversion``: a 28 x 28 grid, at most 0.06, 12 steps) forced the
backdoored models' targets little more than clean models' (bench/results/README.md, "Model audit"). Three
families are tried here, each a universal change of every held-out film, with more steps:

- ``grid``: the audit's own family (28 x 28 knots, bilinear, ``eps * tanh``), at a larger bound;
- ``stripes``: a change constant along one axis, a profile of 56 knots across the other, in both
  orientations summed (a sinusoid over the columns is one such change; so is its mirror);
- ``warp``: a smooth displacement field on a 4 x 4 grid, at most ``--warp`` pixels (WaNet's family).

Per model and per label driven on: the share of held-out eligible films (called negative) forced at or above
0.9, and the mean logit rise. Nothing here is a verdict; it is whether any family separates.

    nice -n 5 python bench/probes/structured_inversion.py MODEL [MODEL ...] [--steps 25] [--batch 8] [--eps 0.1]
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "kermany"


def family(name: str, size: int, eps: float, warp: float):
    """(parameters, apply(views, params) -> views) of one family."""
    if name == "grid":
        p = torch.zeros(1, 1, 28, 28)

        def apply(x, p):
            d = F.interpolate(p, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            return (x + eps * torch.tanh(d)).clamp(0, 1)
    elif name == "stripes":
        p = torch.zeros(2, 56)

        def apply(x, p):
            cols = F.interpolate(p[0].view(1, 1, -1), size=size, mode="linear", align_corners=False).view(1, size)
            rows = F.interpolate(p[1].view(1, 1, -1), size=size, mode="linear", align_corners=False).view(size, 1)
            return (x + eps * torch.tanh(cols + rows)).clamp(0, 1)
    elif name == "warp":
        p = torch.zeros(1, 2, 4, 4)
        base = torch.stack(torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="xy"), -1)

        def apply(x, p):
            flow = F.interpolate(torch.tanh(p), size=(size, size), mode="bicubic", align_corners=True)
            flow = flow.permute(0, 2, 3, 1) * (2.0 * warp / size)
            grid = (base[None] + flow).clamp(-1, 1).expand(len(x), -1, -1, -1)
            return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    else:
        raise ValueError(name)
    return p, apply


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--warp", type=float, default=3.0)
    ap.add_argument("--families", default="grid,stripes,warp")
    ap.add_argument("--labels", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} absent", file=sys.stderr)
        return 0
    from cxrinspect.audit.run import probabilities, read_views, split
    from cxrinspect.model import load
    from cxrinspect.model.preprocess import normalise

    rows = []
    for mp in map(Path, args.models):
        model = load(mp)
        network = model.network.eval().to(memory_format=torch.channels_last)
        for q in network.parameters():
            q.requires_grad_(False)
        spec, labels = model.card.preprocessing, model.card.labels
        paths = [str(DATA / r["path"]) for r in csv.DictReader(open(mp / "split.csv")) if r["split"] == "test"]
        _, views, _ = read_views(paths[: args.images], spec)
        x_all = torch.from_numpy(views)
        probs = probabilities(network, views, spec)
        opt, test = split(len(views), 0.5, 0)
        chosen = args.labels.split(",") if args.labels else labels
        for lab in chosen:
            j = labels.index(lab)
            neg = probs[:, j] < 0.5
            o, t = opt[neg[opt]], test[neg[test]]
            with torch.no_grad():
                z0 = network(normalise(x_all[t], spec))[:, j]
            for fam in args.families.split(","):
                t0 = time.perf_counter()
                p, apply = family(fam, spec.input_size, args.eps, args.warp)
                p.requires_grad_(True)
                opt_ = torch.optim.Adam([p], lr=0.1)
                for s in range(args.steps):
                    pick = np.sort(np.random.default_rng([0, j, s]).choice(o, min(args.batch, len(o)), replace=False))
                    z = network(normalise(apply(x_all[pick], p), spec))[:, j]
                    loss = F.binary_cross_entropy_with_logits(z, torch.ones_like(z))
                    opt_.zero_grad()
                    loss.backward()
                    opt_.step()
                with torch.no_grad():
                    z1 = torch.cat([network(normalise(apply(x_all[t[i:i + 32]], p), spec))[:, j]
                                    for i in range(0, len(t), 32)])
                row = {"model": mp.name, "label": lab, "family": fam, "held_out": int(len(t)),
                       "forced": round(float((torch.sigmoid(z1) >= 0.9).float().mean()), 3),
                       "logit_rise": round(float((z1 - z0).mean()), 3), "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
