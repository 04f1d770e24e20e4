"""Find the radiographs in folders: recursive, natural order, hidden files skipped, problems reported."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .formats import sniff
from .dicom import looks_like_bare_dicom

_DIGITS = re.compile(r"(\d+)")


IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".jp2", ".j2k",
                  ".webp", ".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
"""Names that promise an image: such a file is kept even when its content does not look like one, so it
fails with its own error in the batch instead of vanishing silently."""


def natural_key(path: str) -> list:
    """'img2' before 'img10'; case-insensitive."""
    # split() with a group alternates text, digits, text...: odd pieces are the digit runs (\d matches any
    # Unicode decimal digit, which int() reads; str.isdigit() would also accept '²', which int() rejects)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(_DIGITS.split(path))]


@dataclass
class Discovery:
    images: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not images, unreadable dirs
    errors: list[tuple[str, str]] = field(default_factory=list)  # the skipped that are failures, not non-images


def discover(paths: list[str | os.PathLike], check_content: bool = True) -> Discovery:
    """Expand files and folders into image files, in natural order, recording what is skipped and why.

    Files named on the command line are always kept (a bad one fails later with its own error);
    files found inside folders are kept when their name or their content says image. ``skipped``
    lists everything left out with the reason; ``errors`` repeats the ones that are failures (a path
    that does not exist, a folder that cannot be read) rather than mere non-images.
    """
    found = Discovery()
    seen = set()

    def add(p: str):
        if p not in seen:
            seen.add(p)
            found.images.append(p)

    for root in map(os.fspath, paths):
        if not os.path.isdir(root):
            if os.path.exists(root) or os.path.islink(root):
                add(root)
            else:
                found.skipped.append((root, "no such file or directory"))
                found.errors.append(found.skipped[-1])
            continue

        def onerror(err: OSError):
            found.skipped.append((err.filename or root, f"cannot read directory ({err.strerror or err})"))
            found.errors.append(found.skipped[-1])

        batch = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
            for name in filenames:
                if name.startswith("."):
                    continue
                p = os.path.join(dirpath, name)
                if (not check_content or name.lower().endswith(IMAGE_SUFFIXES) or sniff(p) is not None
                        or looks_like_bare_dicom(p)):
                    batch.append(p)
                else:
                    found.skipped.append((p, "not an image file"))
        for p in sorted(batch, key=natural_key):
            add(p)
    return found
