"""The detection table of bench/results/README.md from ``bench/scan_detection.py --out`` files.

    .venv/bin/python bench/zoo_table.py bench/results/zoo/scan_detection_*.json

One row per model and rate: how many images carry the trigger and how many of those it forced, then per
method AUROC / precision at k over the forced ones (the clean images plus the triggered images whose
prediction the trigger forced; see scan_detection.py), the scan's own ranking also over all triggered ones,
how many forced images the scan confirmed and its folder verdict. Then the costs and the clean models'
false alarms. Nothing here is measured: it only lays out what the JSON files hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METHODS = [("cxrinspect_ranking", "cxrinspect ranking"), ("gradient_alone", "gradient alone"), ("psc_alone", "psc alone"),
           ("contrast_alone", "contrast alone"), ("mirror_alone", "mirror alone"),
           ("cam_top1_share", "CAM top-1%"), ("activation_clustering", "activation clustering"),
           ("spectral_signatures", "spectral signatures")]


def cell(q: dict | None) -> str:
    return "n/a" if not q else f"{q['auroc']:.3f} / {q['precision_at_k']:.2f}"


def verdict(v: dict | None) -> str:
    if not v:
        return "none"
    if not v.get("triggered"):
        return "clean"
    where = v.get("where")
    if isinstance(where, dict):
        where = "at y={:.2f}, x={:.2f}".format(*where["place"])
    return f"triggered: {', '.join(v.get('labels') or [])}, {v.get('count')} images, {where}, {v.get('confidence')}"


def main(paths: list[str]) -> int:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    head = ["model (trigger)", "rate: triggered / forced", "cxrinspect ranking, all triggered",
            *(f"{name}, forced" for _, name in METHODS), "forced confirmed", "folder verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in runs:
        for rate, row in r["rates"].items():
            forced = row.get("forced", 0)
            print("| " + " | ".join([
                f"{r['model']} ({r.get('trigger_described', r['trigger'].get('kind'))})",
                f"{float(rate):.0%}: {row['triggered']} / {forced}",
                cell(row["cxrinspect_ranking"]["all"]),
                *(cell((row.get(key) or {}).get("forced")) for key, _ in METHODS),
                f"{row.get('confirmed_forced', 0)} / {forced}", verdict(row.get("folder_verdict"))]) + " |")
    print()
    print("| model | " + " | ".join(f"{k} ms/image (x plain)" for k in runs[0]["cost"]) + " |")
    print("|" + " --- |" * (1 + len(runs[0]["cost"])))
    for r in runs:
        print(f"| {r['model']} | " + " | ".join(f"{c['ms_per_image']:g} (x{c['x_plain']:g})" for c in r["cost"].values()) + " |")
    clean = [(r["model"], c) for r in runs for c in r.get("clean_models", [])]
    if clean:
        print()
        print("| clean model | folder | images | flagged | checked | confirmed | folder verdict |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for bench_model, c in clean:
            for what, f in c.items():
                if what == "name":
                    continue
                for kind, n in f.items():
                    if kind == "folder_verdict":
                        continue
                    where = f"{what} of {bench_model}'s bench" + (f", {kind} images" if what != "clean folder" else "")
                    print(f"| {c['name']} | {where} | {n['images']} | {n['flagged']} | {n['checked']} | {n['confirmed']} "
                          f"| {verdict(f.get('folder_verdict'))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
