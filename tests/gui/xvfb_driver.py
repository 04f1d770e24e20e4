"""Run the real cxrinspect window (under whatever display $DISPLAY names, QT_QPA_PLATFORM=xcb), show an image
with its prediction and saliency overlay, scan the folder, open the top-ranked image with its hotspot,
and save screenshots. Used by test_gui_xvfb.py; not a test itself.

    python xvfb_driver.py FOLDER MODEL OUT_DIR
"""

import sys
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from cxrinspect.gui.app import build_window, parse


def main(folder: str, model: str, out: str) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    qt_app = QApplication(["cxrinspect"])
    print("platform", qt_app.platformName(), flush=True)
    settings = QSettings(str(out_dir / "settings.ini"), QSettings.Format.IniFormat)
    window = build_window(parse([folder, "--model", model]), settings)
    window.view_model.update(overlay_visible=True, overlay_method="cam", overlay_opacity=0.55)
    window.resize(1400, 900)
    window.show()
    seen = set()
    window.prediction_shown.connect(lambda path: seen.add("prediction"))
    window.overlay_shown.connect(lambda path: seen.add("overlay"))
    started = time.monotonic()
    result = {"code": 3}

    def scanned(result):
        seen.add("scan")
        window.open_record(result.ranked[0])  # the most suspicious image, its hotspot outlined
        window.scan_panel.table.selectRow(0)

    window.scan_finished.connect(scanned)

    def shoot():
        if time.monotonic() - started > 240:
            timer.stop()
            QTimer.singleShot(500, finish)
        elif {"prediction", "overlay"} <= seen and "scan started" not in seen and not window.workers.busy():
            seen.add("scan started")
            window.start_scan("gradient")
        elif "scan" in seen and not window.workers.busy() and window.viewer.hotspot.isVisible():
            timer.stop()
            QTimer.singleShot(500, finish)  # let the last paint land

    def finish():
        qt_app.processEvents()
        screen = qt_app.primaryScreen().grabWindow(0)
        paths = {"screen": out_dir / "screen.png", "window": out_dir / "window.png", "view": out_dir / "view.png"}
        screen.save(str(paths["screen"]))
        window.grab().save(str(paths["window"]))
        window.export_view(str(paths["view"]))
        for name, path in paths.items():
            print(f"screenshot {name}: {path}", flush=True)
        print("seen", sorted(seen), "image", window.current, flush=True)
        result["code"] = 0 if {"prediction", "overlay", "scan"} <= seen else 4
        window.close()
        qt_app.quit()

    timer = QTimer()
    timer.timeout.connect(shoot)
    timer.start(100)
    qt_app.exec()
    return result["code"]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
