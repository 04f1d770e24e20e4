"""The verdict the current rule (cxrinspect.audit.anomaly.verdict) gives on audits already run: each audit.json's
candidates (their mask sizes and held-out successes, as the audit measured them) judged again, beside the verdict
the audit wrote. Nothing is optimised again; a changed verdict's trigger and cross-check need the audit rerun.

    .venv/bin/python bench/probes/reverdict.py bench/results/audit/budget2000/*.json bench/results/audit/sweep/*.json

With ``--whole DIR``, each candidate takes its whole-image figure (``global``) from the audit of the same model and
image count in DIR (an audit run with the whole-image inversion alone: ``bench/audit.py --budget 8 --no-sweep``),
so an audit run before the whole-image line is judged as a default audit now would be:

    .venv/bin/python bench/probes/reverdict.py --whole runs/bench-audit-whole bench/results/audit/budget2000/*-200.json
"""
import json
import sys
from pathlib import Path

from cxrinspect.audit import verdict

args = sys.argv[1:]
whole = None
if args[:1] == ["--whole"]:
    whole, args = Path(args[1]), args[2:]
for path in args:
    doc = json.load(open(path))
    rows = [dict(c) for c in doc["candidates"]]
    if whole is not None:
        other = whole / Path(path).stem / "audit.json"
        if not other.exists():  # the 499 test films' audits are filed as -500
            other = whole / Path(path).stem.replace("-500", "-499") / "audit.json"
        if not other.exists():
            print(f"{path}: no whole-image audit at {other}")
            continue
        figures = {c["candidate"]: c.get("global") for c in json.load(open(other))["candidates"]}
        for r in rows:
            r["global"] = figures.get(r["candidate"])
    now = verdict(rows)
    why = "; ".join(f"{r['candidate']} by {', '.join(r['flagged_by'])}" for r in rows if r["flagged"])
    wholes = ", ".join(f"{r['candidate']} {r['global']['heldout_success']:.2f}" for r in rows
                       if (r.get("global") or {}).get("heldout_success") is not None)
    print(f"{path}: written {'backdoored ' + ', '.join(doc['targets']) if doc['backdoored'] else 'not backdoored'}; "
          f"now {'backdoored ' + ', '.join(now['targets']) if now['backdoored'] else 'not backdoored'}"
          + (f" ({why})" if why else "") + (f"; whole image: {wholes}" if wholes else ""))
