"""A finished bench rate's scan finished again with the scanner as it is now: its ranking, confirmations and
folder verdict judged against the bench's truth. Copy the bench's scan (``scan.json``, ``scan.jsonl``) to a new
folder and resume it there: the per-image scores are the recorded ones, and everything after them (the checks,
the transplant test, the verdict, the ranking) runs with the current code.

    mkdir runs/sig-resume && cp runs/bench14-sig/scan-0.1/scan.json* runs/sig-resume/
    nice -n 5 .venv/bin/cxrinspect scan runs/bench14-sig/images-0.1 --model bench/zoo/zoo-sig --method auto \
        --batch-size 16 --resume --out runs/sig-resume
    nice -n 5 .venv/bin/python bench/probes/refinished.py bench/zoo/zoo-sig runs/bench14-sig 0.1 \
        runs/zoo14/scan_detection_sig.csv runs/sig-resume
"""
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from combine_contrast import recorded_run  # noqa: E402
from scan_detection import quality  # noqa: E402


def main() -> None:
    model_dir, work, rate, records, out = sys.argv[1:6]
    model, rows, _, _, _, truth, fired, _ = recorded_run(model_dir, work, rate, records)
    again = {Path(r["path"]).name: r for r in csv.DictReader(open(Path(out) / "ranking.csv"))}
    rank = np.array([float(again[r["file"]]["rank"]) for r in rows])
    verdict = np.array([again[r["file"]]["verdict"] for r in rows])
    evidence = [again[r["file"]]["evidence"] for r in rows]
    keep = ~truth | fired
    q, qa = quality(fired[keep], -rank[keep]), quality(truth, -rank)
    confirmed = verdict == "trigger"
    print(f"{model.card.name} {rate} finished again in {out}: {truth.sum()} triggered, {fired.sum()} forced")
    print(f"  ranking: forced {q['auroc']:.3f} / {q['precision_at_k']:.2f}, all triggered {qa['auroc']:.3f} / "
          f"{qa['precision_at_k']:.2f}")
    print(f"  confirmed: {(confirmed & fired).sum()} of {fired.sum()} forced, {(confirmed & truth).sum()} of "
          f"{truth.sum()} triggered, {(confirmed & ~truth).sum()} of {(~truth).sum()} clean; by evidence "
          + str(dict(Counter((bool(t), e) for t, e, c in zip(truth, evidence, confirmed) if c))))
    verdict_doc = json.loads((Path(out) / "report.json").read_text())["folder_verdict"]
    print("  folder verdict: " + verdict_doc["sentence"])
    print("  transplant: " + json.dumps(verdict_doc.get("transplant")))


if __name__ == "__main__":
    main()
