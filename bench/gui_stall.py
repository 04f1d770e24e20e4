"""How long does the cxrinspect window freeze while it scans 200 real radiographs?

    python bench/gui_stall.py [--images 200] [--model DIR] [--method gradient] [--data DIR]

Opens the real main window (offscreen unless QT_QPA_PLATFORM says otherwise) on a folder of N
radiographs (../shared/data/kermany if present, else resources/samples repeated) with the bundled model,
runs the Scan panel's scan and, while it runs, a QTimer ticking every 5 ms records the gaps between its
ticks: any gap beyond 5 ms is time the event loop could not run (a stall the user would feel).

Prints, in one run:
- idle:     the same timer with the window open and nothing running (the floor: timer jitter, machine load);
- scan:     longest gap, 99th and 50th percentile of gaps during the scan, scan time and images/s;
- blocking: one scanner batch run ON the UI thread, what a naive GUI would do for every batch
            (its stall is that batch's whole duration);
and the ratios against them. Timings vary with machine load; never a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication


def pick_images(n: int, data: Path) -> list[Path]:
    from cxrinspect.imaging import discover

    if data.is_dir():
        found = discover([data]).images
        step = max(1, len(found) // n)
        chosen = [Path(p) for p in found[::step][:n]]
        if len(chosen) >= n:
            return chosen
    samples = [Path(p) for p in discover([ROOT / "resources" / "samples"]).images]
    return [samples[i % len(samples)] for i in range(n)]


class StallMeter:
    """A 5 ms timer; every gap between ticks is recorded while ``running``."""

    def __init__(self, interval_ms: int = 5):
        self.interval = interval_ms
        self.gaps: list[float] = []
        self.times: list[float] = []  # seconds since start, at the end of each gap
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self._last = None

    def _tick(self):
        now = self.clock.nsecsElapsed() / 1e6
        if self._last is not None:
            self.gaps.append(now - self._last)
            self.times.append(now / 1000)
        self._last = now

    def start(self):
        self.gaps, self.times, self._last = [], [], None
        self.clock.start()
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        g = np.array(self.gaps or [0.0])
        worst = sorted(zip(self.gaps, self.times), reverse=True)[:5]
        return {"ticks": len(self.gaps), "max_ms": float(g.max()), "p99_ms": float(np.percentile(g, 99)),
                "p50_ms": float(np.percentile(g, 50)), "over_100ms": int((g > 100).sum()),
                "worst": ", ".join(f"{gap:.0f} ms at {t:.1f} s" for gap, t in worst)}


class StallWitness:
    """--diagnose: a watchdog thread that, when the UI timer is 250 ms late, notes where every thread is."""

    def __init__(self, meter: StallMeter, late_ms: float = 250):
        import threading

        self.meter, self.late, self.notes = meter, late_ms, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        import threading
        import traceback

        noted_for = None
        while not self._stop.wait(0.05):
            last = self.meter._last
            if last is None or not self.meter.timer.isActive():
                continue
            now = self.meter.clock.nsecsElapsed() / 1e6
            if now - last > self.late and noted_for != last:
                noted_for = last
                names = {t.ident: t.name for t in threading.enumerate()}
                where = []
                for ident, frame in sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    stack = traceback.extract_stack(frame)[-3:]
                    where.append(f"    {names.get(ident, ident)}: " + " <- ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)))
                self.notes.append(f"  UI late by {now - last:.0f} ms at {now / 1000:.1f} s:\n" + "\n".join(where))

    def stop(self):
        self._stop.set()
        self._thread.join()


def wait(app, seconds: float, until=lambda: False):
    """Run the real event loop (as ``app.exec()`` does: blocked in the native wait, the GIL released) until
    ``until()`` or ``seconds`` pass. A loop of ``processEvents`` calls instead keeps the GIL busy and, measured
    here, cuts a worker thread's scan from 5.3 to 3.0 images/s: it made the app look slower than it is."""
    end = time.monotonic() + seconds
    loop = QEventLoop()
    check = QTimer()
    check.timeout.connect(lambda: loop.quit() if time.monotonic() >= end or until() else None)
    check.start(20)
    if not until():
        loop.exec()
    check.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default=None)
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kermany"))
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--diagnose", action="store_true", help="say where every thread was during long stalls")
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication(["cxrinspect-bench"])
    from cxrinspect.gui.app import default_model
    from cxrinspect.gui.window import MainWindow

    model = args.model or default_model()
    chosen = pick_images(args.images, Path(args.data))
    work = Path(tempfile.mkdtemp(prefix="cxrinspect-stall-"))
    folder = work / "images"
    folder.mkdir()
    for i, src in enumerate(chosen):
        os.symlink(src.resolve(), folder / f"{i:04d}-{src.name}")
    print(f"{len(chosen)} images from {chosen[0].parent if chosen else '-'}; model {model}; method {args.method}; "
          f"platform {app.platformName()}")

    window = MainWindow(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 900)
    window.show()
    ready = {"model": False, "image": False}
    window.model_ready.connect(lambda _p: ready.__setitem__("model", True))
    window.image_shown.connect(lambda _p: ready.__setitem__("image", True))
    window.set_model(model)
    window.open_folder(str(folder))
    window.warm_up()  # as the app does at start-up: the libtorch import's GIL stall happens here, not mid-scan
    wait(app, 600, lambda: all(ready.values()) and not window.workers.busy())

    meter = StallMeter()
    meter.start()
    wait(app, args.idle_seconds)
    idle = meter.stop()

    done = {}
    window.scan_finished.connect(lambda result: done.__setitem__("result", result))
    window.scan_panel.model.rowsInserted.connect(lambda *_: done.__setitem__("last_record", time.perf_counter()))
    meter.start()
    witness = StallWitness(meter) if args.diagnose else None
    t0 = time.perf_counter()
    window.start_scan(args.method)
    wait(app, 3600, lambda: "result" in done)
    seconds = time.perf_counter() - t0
    scan = meter.stop()
    if witness is not None:
        witness.stop()
    result = done.get("result")

    # the naive alternative: one batch of the same scanner on the UI thread (the stall is the call's duration)
    from cxrinspect.model import load
    from cxrinspect.scan import Scanner

    scanner = Scanner(load(model), method=args.method)
    batch = [str(p) for p in sorted(folder.iterdir())[:scanner.batch_size]]
    t = time.perf_counter()
    list(scanner.scan(batch))
    blocking = {"max_ms": (time.perf_counter() - t) * 1000}

    window.close()
    shutil.rmtree(work, ignore_errors=True)
    n = len(result.records) if result else 0
    print(f"idle      : max {idle['max_ms']:7.1f} ms   p99 {idle['p99_ms']:6.1f} ms   p50 {idle['p50_ms']:5.1f} ms  "
          f"({idle['ticks']} ticks)")
    scanned = done.get("last_record", t0 + seconds) - t0
    print(f"scan      : max {scan['max_ms']:7.1f} ms   p99 {scan['p99_ms']:6.1f} ms   p50 {scan['p50_ms']:5.1f} ms  "
          f"({scan['ticks']} ticks, {scan['over_100ms']} gaps over 100 ms)")
    print(f"            worst: {scan['worst']}")
    print(f"            {n} images scanned in {scanned:.1f} s ({n / max(scanned, 1e-9):.2f} images/s), then "
          f"verification and report thumbnails until {seconds:.1f} s")
    print(f"blocking  : max {blocking['max_ms']:7.1f} ms   (one batch of {len(batch)} on the UI thread)")
    print(f"ratios    : scan max / idle max = {scan['max_ms'] / max(idle['max_ms'], 1e-9):.1f}x; "
          f"blocking batch / scan max = {blocking['max_ms'] / max(scan['max_ms'], 1e-9):.1f}x")
    if witness is not None:
        print("\n".join(witness.notes[:12]) or "no stall over 250 ms")
    return 0 if result is not None else 1


if __name__ == "__main__":
    sys.exit(main())
