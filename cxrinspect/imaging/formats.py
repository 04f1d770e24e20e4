"""Which reader a file needs, decided by its content (magic bytes), not its name."""

from __future__ import annotations

import os

from .dicom import looks_like_bare_dicom, read_dicom
from .itk import ITK_SUFFIXES, read_itk
from .radiograph import ImageReadError, Radiograph
from .raster import read_raster

RASTER_MAGIC = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF87a", b"GIF89a",
    b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51", b"RIFF",
)


def sniff(path: str) -> str | None:
    """'dicom', 'raster', 'itk' or None, from the first bytes of the file (and its suffix for ITK)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if any(head.startswith(m) for m in RASTER_MAGIC):
        return "raster"
    lower = path.lower()
    if head.startswith(b"NRRD") or b"ObjectType" in head[:200] or (len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00")):
        return "itk"
    if lower.endswith(ITK_SUFFIXES) and head:
        return "itk"
    return None


def load(path: str | os.PathLike) -> Radiograph:
    """Read one radiograph from any supported file. Raises :class:`ImageReadError` naming the file and why."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ImageReadError(path, "is a directory, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageReadError(path, f"cannot open ({e.strerror or e})") from e
    if size == 0:
        raise ImageReadError(path, "file is empty")
    if not os.access(path, os.R_OK):
        raise ImageReadError(path, "permission denied")
    try:
        kind = sniff(path)
        if kind == "dicom":
            return read_dicom(path)
        if kind == "raster":
            return read_raster(path)
        if kind == "itk":
            return read_itk(path)
        if looks_like_bare_dicom(path):
            return read_dicom(path)
    except ImageReadError:
        raise
    except MemoryError as e:
        raise ImageReadError(path, "out of memory while decoding") from e
    except Exception as e:  # a reader's unforeseen failure is still this file's error, never a crash
        raise ImageReadError(path, f"cannot read ({type(e).__name__}: {e})") from e
    raise ImageReadError(path, "not a recognised image format (not DICOM, PNG, JPEG, TIFF, BMP, MHA, NRRD or NIfTI)")
