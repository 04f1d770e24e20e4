"""Model-audit bench: per model (the shipped clean and BadNets models, every model of runs/zoo present), audit it
with N clean radiographs of its own held-out test patients (split.csv) and compare with what its card declares.

    nice -n 5 python bench/audit.py [--images 200] [--split test|val] [--seed 0] [--budget 2000] [--global-steps 25] [--no-sweep]
        [--models DIR ...] [--out runs/bench-audit]

Prints one row per model: verdict, targets found vs declared, recovered box vs the true box (model-input pixels),
the held-out attack success of the recovered trigger, steps, seconds, and the forward and forward+backward
rates measured in the same run (the machine is shared: compare the ratio, not the seconds)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "kermany"


def models(extra: list[str]) -> list[Path]:
    if extra:
        return [Path(m) for m in extra]
    out = [ROOT / "resources/models/kermany-densenet121-clean", ROOT / "resources/models/kermany-densenet121-badnets"]
    for zoo in (ROOT / "bench/zoo", ROOT / "runs/zoo"):
        if zoo.is_dir():
            out += sorted(p for p in zoo.iterdir() if (p / "card.json").exists() and (p / "weights.safetensors").exists())
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--budget", type=int, default=None, help="image passes (default: the audit's own, 2000)")
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--out", default=str(ROOT / "runs/bench-audit"))
    ap.add_argument("--directions", default="on")
    ap.add_argument("--seed", type=int, default=0, help="the audit's seed (its split into optimise and held-out "
                    "images and its mini-batches)")
    ap.add_argument("--split", default="test", help="the split.csv split whose films are audited (test; val: other "
                    "held-out patients, to check that lines drawn on the test films transfer)")
    ap.add_argument("--global-steps", type=int, default=None,
                    help="steps of the whole-image inversion per candidate (default: the audit's own)")
    ap.add_argument("--warp-steps", type=int, default=None,
                    help="steps per run of the warp inversion (default: the audit's own; 0: not run)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the stamp sweep (with --budget 8: the whole-image "
                    "inversion alone)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} absent", file=sys.stderr)
        return 0
    from cxrinspect.audit import audit
    from cxrinspect.audit.inversion import GLOBAL_STEPS, WARP_STEPS
    from cxrinspect.audit.run import BUDGET
    from cxrinspect.model import load

    for mp in models(args.models):
        model = load(mp)
        split = mp / "split.csv"
        rows = [r for r in csv.DictReader(open(split))] if split.exists() else []
        paths = [str(DATA / r["path"]) for r in rows if r["split"] == args.split][: args.images]
        out = Path(args.out) / (f"{mp.name}-{args.images}{'' if args.split == 'test' else '-' + args.split}"
                                f"{'' if args.seed == 0 else f'-seed{args.seed}'}")
        t = time.perf_counter()
        res = audit(paths, model, out, budget=args.budget or BUDGET, directions=tuple(args.directions.split(",")),
                    global_steps=GLOBAL_STEPS if args.global_steps is None else args.global_steps,
                    warp_steps=WARP_STEPS if args.warp_steps is None else args.warp_steps,
                    sweep=not args.no_sweep, seed=args.seed, resume=(out / "audit-state.safetensors").exists(),
                    progress=lambda done, total, info: (done % 25 or "stage" in info) or print(f"  {mp.name}: step {done}/{total} "
                                                                          f"{info}", flush=True))
        doc = res.doc
        card = model.card
        true_box = list(card.trigger.box((224, 224))) if card.trigger and card.trigger.local else None
        declared_on = sorted(k for k, v in (card.target or {}).items() if v >= 0.5)
        row = {"model": mp.name, "images": doc["images"], "split": args.split, "seed": args.seed,
               "declared_poisoned": card.poisoned,
               "declared_trigger": card.trigger.describe() if card.trigger else None, "declared_on": declared_on,
               "backdoored": doc.get("backdoored"), "targets": doc.get("targets"),
               "box": (doc.get("trigger") or {}).get("box"), "true_box": true_box,
               "heldout_success": (doc.get("trigger") or {}).get("heldout_success"),
               "candidates": [(c["candidate"], c["mask_l1"], c["heldout_success"], c["anomaly_index"], c["steps"], c["stop"],
                               (c.get("global") or {}).get("reduced_success")) for c in doc.get("candidates", [])],
               "whole": {c["candidate"]: c["global"] for c in doc.get("candidates", []) if c.get("global")},
               "warp": {c["candidate"]: c["warp"] for c in doc.get("candidates", []) if c.get("warp")},
               "flagged_by": {c["candidate"]: c.get("flagged_by") for c in doc.get("candidates", []) if c.get("flagged")},
               "squares": {c["candidate"]: c["square"] for c in doc.get("candidates", []) if c.get("square")},
               "steps": doc["steps"], "seconds": round(time.perf_counter() - t, 1), **doc["timing"]}
        print(json.dumps(row), flush=True)
        with open(Path(args.out) / "bench.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
