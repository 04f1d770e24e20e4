"""Model-audit bench: per model (the shipped clean and BadNets models, every model of runs/zoo present), audit it
with N clean radiographs of its own held-out test patients (split.csv) and compare with what its card declares.

    nice -n 5 python bench/audit.py [--images 200] [--split test|val] [--seed 0] [--budget 2000] [--global-steps 25] [--no-sweep] [--triggered 20]
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

import numpy as np

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


def triggered_films(model, paths: list[str], out: Path):
    """``paths`` written with the model's own trigger under ``out``/triggered (the scanner bench's
    ``write_folder``), and per film whether the trigger forced its prediction (the scanner bench's ``forced``)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from scan_detection import forced, views_of, write_folder

    from cxrinspect.audit.run import probabilities

    card, spec = model.card, model.card.preprocessing
    every, out = set(range(len(paths))), out.resolve()  # write_folder links to its files by absolute path
    stamped = write_folder(out / "triggered", paths, every, card.trigger, spec, out / "triggered-files")
    plain = write_folder(out / "plain", paths, set(), card.trigger, spec, out / "triggered-files")
    net = model.network.eval()
    p_with, p_without = (probabilities(net, views_of(f, spec), spec) for f in (stamped, plain))
    return stamped, forced(card, p_with, p_without)


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
    ap.add_argument("--triggered", type=int, default=0,
                    help="add this many further films of the split (spread over the films after --images) with the model's own trigger stamped in (as the "
                    "scanner bench writes them) and search the folder for the recovered trigger (--search): the row's "
                    "'search' says how many of them, and how many clean films, the search listed")
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
        films = [str(DATA / r["path"]) for r in rows if r["split"] == args.split]
        paths = films[: args.images]
        out = Path(args.out) / (f"{mp.name}-{args.images}{'' if args.split == 'test' else '-' + args.split}"
                                f"{'' if args.seed == 0 else f'-seed{args.seed}'}"
                                f"{f'-t{args.triggered}' if args.triggered else ''}")
        stamped, forced_by = [], None
        if args.triggered and model.card.trigger is not None:
            rest = films[args.images:]  # spread over the rest of the split: it lists each class in a run
            pick = np.unique(np.linspace(0, len(rest) - 1, min(args.triggered, len(rest))).astype(int))
            stamped, forced_by = triggered_films(model, [rest[i] for i in pick], out)
        t = time.perf_counter()
        res = audit(paths + stamped, model, out, search=bool(stamped), budget=args.budget or BUDGET, directions=tuple(args.directions.split(",")),
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
        if stamped:
            listed = {x["path"] for x in (doc.get("search") or {}).get("carrying", [])}
            row["search"] = {"skipped": (doc.get("search") or {}).get("skipped"), "triggered": len(stamped),
                             "forced": int(forced_by.sum()), "found": sum(f in listed for f in stamped),
                             "found_forced": sum(f in listed for f, y in zip(stamped, forced_by) if y),
                             "clean_listed": sum(f in listed for f in paths)}
        print(json.dumps(row), flush=True)
        with open(Path(args.out) / "bench.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
