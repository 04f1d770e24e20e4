"""The verdict the current rule (cxrinspect.audit.anomaly.verdict) gives on audits already run: each audit.json's
candidates (their mask sizes and held-out successes, as the audit measured them) judged again, beside the verdict
the audit wrote. Nothing is optimised again; a changed verdict's trigger and cross-check need the audit rerun.

    .venv/bin/python bench/probes/reverdict.py bench/results/audit/budget2000/*.json bench/results/audit/sweep/*.json
"""
import json
import sys

from cxrinspect.audit import verdict

for path in sys.argv[1:]:
    doc = json.load(open(path))
    rows = [dict(c) for c in doc["candidates"]]
    now = verdict(rows)
    print(f"{path}: written {'backdoored ' + ', '.join(doc['targets']) if doc['backdoored'] else 'not backdoored'}; "
          f"now {'backdoored ' + ', '.join(now['targets']) if now['backdoored'] else 'not backdoored'}")
