"""Atomic file output: write beside the target, flush to disk, rename over it.

A reader (or a crash) sees the old file or the new one, never a torn one. Every output of the
project (models, checkpoints, reports, CSVs, rendered views) goes through :func:`replace`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace(path: str | Path, write: Callable[[str], None], suffix: str = "") -> Path:
    """Call ``write(temporary_path)``, then move the finished file to ``path`` atomically.

    ``suffix`` keeps the temporary file's extension for writers that choose a format by name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    return replace(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
