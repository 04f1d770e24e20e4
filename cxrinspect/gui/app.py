"""The entry point: ``cxrinspect [FOLDER] [--model PATH]`` (also ``python -m cxrinspect.gui``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__, resources
from .predictions import RESOURCES, bundled_models

SAMPLES = RESOURCES / "samples"


def app_icon():
    """The window icon: the SVG and every PNG size in resources/icons."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = resources.icon(size)
        if png.is_file():
            icon.addFile(str(png))
    svg = resources.icon()
    if svg.is_file():
        icon.addFile(str(svg))
    return icon


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrinspect", description="Open the cxrinspect desktop window.")
    parser.add_argument("folder", nargs="?", help="folder of radiographs (default: the last one, else the samples)")
    parser.add_argument("--model", help="model directory or .safetensors file (default: the last one, else the "
                                        "bundled model)")
    return parser.parse_args(argv)


def default_model() -> str | None:
    """The command line's default model when it is there, else the first bundled model."""
    from ..cli import default_model_path

    path = default_model_path()
    if (Path(path) / "card.json").is_file():
        return str(path)
    models = bundled_models()
    return str(models[0]) if models else None


def initial_folder(given: str | None, remembered: str | None) -> str:
    """The folder named on the command line, else the last one opened (if it still exists), else the samples."""
    for folder in (given, remembered):
        if folder and os.path.isdir(folder):
            return folder
    return str(SAMPLES)


def initial_model(given: str | None, remembered: str | None) -> str | None:
    """The model named on the command line, else the last one used (if it still exists), else the bundled one."""
    if given:
        return given  # a bad path is reported in the Predict panel, not silently replaced
    if remembered and os.path.exists(remembered):
        return remembered
    return default_model()


def build_window(args: argparse.Namespace, settings=None, select: str | None = None):
    """The main window with the folder and the model of ``args`` (or the remembered / bundled ones) opening."""
    from .window import MainWindow

    window = MainWindow(settings)
    folder = initial_folder(args.folder, window.prefs.folder)
    model = initial_model(args.model, window.prefs.model)
    if model:
        window.set_model(model)
    window.open_folder(folder, select=select)
    window.warm_up()
    return window


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.folder and not os.path.exists(args.folder):  # (a single file opens its folder with it selected)
        print(f"cxrinspect: error: no such folder: {args.folder}", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")  # report figures are drawn in workers, never on screen
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["cxrinspect"])
    app.setOrganizationName("cxrinspect")
    app.setApplicationName("cxrinspect")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("cxrinspect")  # matches packaging/cxrinspect.desktop: the shell groups and icons the window
    app.setWindowIcon(app_icon())
    select = None
    if args.folder and os.path.isfile(args.folder):
        select = os.path.abspath(args.folder)
        args.folder = os.path.dirname(select)
    window = build_window(args, select=select)
    window.show()
    _watch_first_paint(app, window)
    return app.exec()


def _watch_first_paint(app, window) -> None:
    """Packaging checks and benches, driven by the environment (nothing happens without it):
    CXRINSPECT_FIRST_PAINT=FILE writes the seconds from process start to the window's first paint and
    quits; CXRINSPECT_SCREENSHOT=FILE saves the window CXRINSPECT_SCREENSHOT_AFTER seconds (default 20,
    time for the model's prediction) after the first paint and quits."""
    first_paint_file = os.environ.get("CXRINSPECT_FIRST_PAINT")
    shot = os.environ.get("CXRINSPECT_SCREENSHOT")
    if not (first_paint_file or shot):
        return
    import time

    from PySide6.QtCore import QEvent, QObject, QTimer

    from .. import atomic

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Paint and not getattr(self, "seen", False):
                self.seen = True
                QTimer.singleShot(0, self.painted)
            return False

        def painted(self):
            if first_paint_file:
                started = _process_start_time()
                atomic.write_text(first_paint_file, f"{time.time() - started:.3f}\n")
                if not shot:
                    app.quit()
            if shot:
                delay = float(os.environ.get("CXRINSPECT_SCREENSHOT_AFTER", "20"))
                QTimer.singleShot(int(delay * 1000), self.capture)

        def capture(self):
            atomic.replace(shot, lambda tmp: window.grab().save(tmp, "PNG"))
            app.quit()

    watcher = FirstPaint(window)
    window.installEventFilter(watcher)
    window._first_paint_watcher = watcher  # noqa: SLF001 - keep it alive with the window


def _process_start_time() -> float:
    """When this process started (wall clock), from /proc on Linux; else when this module was imported."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return _IMPORTED


_IMPORTED = __import__("time").time()
