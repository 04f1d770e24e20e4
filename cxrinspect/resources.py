"""Where the bundled files are: one lookup, from a source checkout and from the frozen app.

From source the resources sit beside the package (``<checkout>/resources``); in the PyInstaller
bundle they sit under ``sys._MEIPASS/resources`` (packaging/cxrinspect.spec puts them there).
``CXRINSPECT_RESOURCES`` overrides both (a packager's or a test's choice).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def root() -> Path:
    """The resources folder (samples, models, icons)."""
    override = os.environ.get("CXRINSPECT_RESOURCES")
    if override:
        return Path(override)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def path(*parts: str) -> Path:
    """A file or folder under the resources folder, e.g. ``path("samples")``."""
    return root().joinpath(*parts)


def samples() -> Path:
    return path("samples")


def models() -> Path:
    return path("models")


def model_dir(name: str) -> Path:
    return path("models", name)


def icon(size: int | None = None) -> Path:
    """The app icon: the SVG, or the PNG of ``size`` pixels."""
    return path("icons", "cxrinspect.svg" if size is None else f"cxrinspect-{size}.png")


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False) and getattr(sys, "_MEIPASS", None))
