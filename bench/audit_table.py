"""The model-audit table of bench/results/README.md from ``bench/audit.py``'s rows (``bench.jsonl``).

    .venv/bin/python bench/audit_table.py runs/bench-audit/bench.jsonl [...]
    .venv/bin/python bench/audit_table.py --whole runs/bench-audit/bench.jsonl [...]
    .venv/bin/python bench/audit_table.py --warp runs/bench-audit/bench.jsonl [...]

One row per model and image count: what its card declares (trigger, labels forced on), the verdict and the
targets found, the recovered box against the true one, the held-out attack success of the recovered trigger,
then per candidate its mask L1 (pixels; the stamp sweep's square when it found one), held-out success of the mask and of
the whole-image inversion, and the seconds: in all, of the sweep and of the whole-image inversions ("-": not run or not
recorded). With ``--whole``, the whole-image stage alone: one row per model, image set and seed, each label's share
of calm held-out films (the mean, each run's in brackets) and, for the record, the share over every film eligible for
the label, and the labels over today's whole-image lines. With ``--warp``, the warp stage alone: each label's best run's
share of calm held-out films (each run's, and how it ended, in brackets), the labels over today's warp lines and the
stage's seconds. Nothing here is measured: it only lays out what the rows hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _square(sq: dict | None) -> str:
    if not sq:
        return ""
    shade = sq.get("pattern_name") or {0.0: "black", 1.0: "white"}[sq["value"]]  # the first rows had a value
    return f" (sweep: {shade} {sq['size']}x{sq['size']} at {sq['top']},{sq['left']})"


def whole(rows: list[dict]) -> None:
    from cxrinspect.audit.anomaly import GLOBAL_SUCCESS as OTHER, WHOLE_IMAGE_LINES as LINES  # the lines now
    print("| model (declared labels forced on) | films (split, seed) | over the whole-image line | per label driven on: "
          "calm share at 3/4 size (runs); at full size (runs), calm films held out; share of every eligible film |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        cells, over = [], []
        for cand, g in (r.get("whole") or {}).items():
            label = cand.split(":")[0]
            if g.get("heldout_success") is None:
                cells.append(f"{label} {g.get('stop')}")
                continue
            runs = ", ".join(f"{x:.2f}" for x in g.get("restarts", []))
            reduced = ", ".join(f"{x:.2f}" for x in g.get("reduced_restarts", []))
            judged = g.get("reduced_success")  # rows before the eighteenth session have the full-size share only
            cells.append((f"{label} **{judged:.2f}** ({reduced}); " if judged is not None else f"{label} ")
                         + f"{g['heldout_success']:.2f}{f' ({runs})' if runs else ''}, "
                         f"{g['held_out']}; {g['eligible_success']:.2f}")
            line = LINES.get(label, OTHER)
            if line is not None and judged is not None and judged >= line:
                over.append(label)
        print(f"| {r['model']} ({', '.join(r['declared_on']) or 'clean'}) | {r['images']} ({r.get('split', 'test')}, "
              f"{r.get('seed', 0)}) | {', '.join(over) or 'none'} | {'; '.join(cells)} |")


def warp(rows: list[dict]) -> None:
    from cxrinspect.audit.anomaly import warp_line  # the lines now
    print("| model (declared labels forced on) | films (split, seed) | over the warp line | per label driven on: best "
          "run's calm share (each run's: how it ended), calm films held out | warp stage, s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        cells, over = [], []
        for cand, w in (r.get("warp") or {}).items():
            label = cand.split(":")[0]
            if w.get("heldout_success") is None:
                cells.append(f"{label} {w.get('stop')}")
                continue
            runs = ", ".join(f"{x:.2f}: {stop}" for x, stop in zip(w["restarts"], w["stops"]))
            cells.append(f"{label} **{w['heldout_success']:.2f}** ({runs}), {w['held_out']}")
            line = warp_line(label)
            if line is not None and w["heldout_success"] >= line:
                over.append(label)
        print(f"| {r['model']} ({', '.join(r['declared_on']) or 'clean'}) | {r['images']} ({r.get('split', 'test')}, "
              f"{r.get('seed', 0)}) | {', '.join(over) or 'none'} | {'; '.join(cells)} | {r.get('warp_seconds', '-')} |")


def main(paths: list[str]) -> int:
    if paths[:1] in (["--whole"], ["--warp"]):
        rows = [json.loads(line) for p in paths[1:] for line in Path(p).read_text().splitlines() if line.strip()]
        (whole if paths[0] == "--whole" else warp)(rows)
        return 0
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    print("| model (declared trigger, labels forced on) | images | verdict, targets found | recovered box / true box "
          "| per candidate: mask L1 px, held-out success (mask / whole-image) | seconds: all, sweep, whole-image (passes/s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        declared = f"{r['declared_trigger'] or 'clean'}, {', '.join(r['declared_on']) or '-'}"
        flagged = r.get("flagged_by") or {}  # candidate -> the lines it crossed (rows since the fourteenth session)
        named = (", ".join(f"{c} ({', '.join(lines)})" for c, lines in flagged.items()) if flagged
                 else ", ".join(r["targets"]))
        found = f"**backdoored**: {named}" if r["backdoored"] else "not backdoored"
        box = f"{r['box'] or '-'} / {r['true_box'] or '-'}"
        squares = r.get("squares") or {}
        cands = "; ".join(f"{c[0]} {'-' if c[1] is None else round(c[1])} px{_square(squares.get(c[0]))}, "
                          f"{'-' if c[2] is None else f'{c[2]:.2f}'} / {'-' if len(c) < 7 or c[6] is None else f'{c[6]:.2f}'}"
                          for c in r["candidates"])
        parts = [f"{r['seconds']:.0f}"] + [f"{r[k]:.0f}" if r.get(k) else "-" for k in ("sweep_seconds", "global_seconds")]
        print(f"| {r['model']} ({declared}) | {r['images']} | {found} | {box} | {cands} | "
              f"{', '.join(parts)} ({r['forward_backward_images_per_s']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
