"""The entry point: ``cxrinspect [FOLDER] [--model PATH]`` (also ``python -m cxrinspect.gui``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .predictions import RESOURCES, bundled_models

SAMPLES = RESOURCES / "samples"


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
    select = None
    if args.folder and os.path.isfile(args.folder):
        select = os.path.abspath(args.folder)
        args.folder = os.path.dirname(select)
    window = build_window(args, select=select)
    window.show()
    return app.exec()
