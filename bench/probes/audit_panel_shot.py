"""A real window (run it under Xvfb) of the app's Audit panel showing a finished bench audit: the audit is
resumed from a copy of its folder (the inversions are kept; the cross-check and the whole-image stage run again),
shown in :class:`cxrinspect.gui.audit_panel.AuditPanel`, and the window saved as a PNG.

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python bench/probes/audit_panel_shot.py \
        bench/zoo/zoo-letter runs/a16-on/zoo-letter-200 OUT.png
"""
import csv
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication

from cxrinspect.audit import audit
from cxrinspect.gui.audit_panel import AuditPanel
from cxrinspect.model import load

DATA = Path(__file__).resolve().parents[3] / "shared/data/kermany"

model_dir, done, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
images = int(done.name.rsplit("-", 1)[1])
rows = list(csv.DictReader(open(model_dir / "split.csv")))
paths = [str(DATA / r["path"]) for r in rows if r["split"] == "test"][:images]
app = QApplication.instance() or QApplication([])
with tempfile.TemporaryDirectory() as tmp:
    work = Path(tmp) / done.name
    shutil.copytree(done, work)
    result = audit(paths, load(model_dir), work, resume=True, report=False)
panel = AuditPanel()
panel.setWindowTitle(f"cxrinspect: audit of {model_dir.name}")
panel.resize(1000, 560)
panel.show_result(result)
panel.show()
for _ in range(20):
    app.processEvents()
panel.grab().save(out, "PNG")
print(result.doc["backdoored"], result.doc["targets"], (result.doc.get("trigger") or {}).get("box"), out)
