"""Bad input (issue 2, item 7): each file gives one ImageReadError naming it and why; nothing else escapes, and
memory stays bounded."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrinspect.imaging import ImageReadError, load

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage we made on purpose


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A tiny PNG whose (valid, CRC-checked) IHDR claims width x height; the IDAT holds a few rows at most."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def edited(dicom_dir: Path, fixture: str, dst: Path, edit) -> Path:
    ds = pydicom.dcmread(dicom_dir / fixture)
    edit(ds)
    ds.save_as(dst)
    return dst


def make_bad(kind: str, tmp: Path, dicom_dir: Path, images_dir: Path) -> Path:
    """Build one bad input in ``tmp`` from the real fixtures."""
    jpeg = images_dir / "IM-0001-0001.jpeg"
    if kind == "empty.dcm" or kind == "empty.png":
        (tmp / kind).write_bytes(b"")
    elif kind in ("text.dcm", "text.png"):
        (tmp / kind).write_text("Patient list\nnot an image at all\n" * 20)
    elif kind == "truncated.png":
        with Image.open(jpeg) as img:
            img.convert("L").save(tmp / "whole.png")
        cut(tmp / "whole.png", tmp / kind, 0.5)
    elif kind == "truncated.jpeg":
        cut(jpeg, tmp / kind, 0.5)
    elif kind == "png_signature_only.png":
        (tmp / kind).write_bytes(b"\x89PNG\r\n\x1a\n")
    elif kind == "png_bad_crc.png":
        data = bytearray(png_claiming(64, 64))
        data[29] ^= 0xFF  # flip a byte of the IHDR CRC
        (tmp / kind).write_bytes(bytes(data))
    elif kind == "png_bomb_100000x100000.png":
        (tmp / kind).write_bytes(png_claiming(100_000, 100_000))
    elif kind == "dicom_pixels_cut_uncompressed.dcm":
        cut(dicom_dir / "rg1_small_uncompressed.dcm", tmp / kind, 0.6)
    elif kind == "dicom_pixels_cut_j2k.dcm":
        cut(dicom_dir / "rg1_small_j2k_lossless.dcm", tmp / kind, 0.6)
    elif kind == "dicom_pixels_cut_jpeg.dcm":
        cut(dicom_dir / "cr_chest_jpeg_baseline.dcm", tmp / kind, 0.6)
    elif kind == "dicom_header_cut.dcm":
        cut(dicom_dir / "rg1_small_uncompressed.dcm", tmp / kind, 0.001)  # 452 bytes: inside the header
    elif kind == "dicom_no_pixel_data.dcm":
        edited(dicom_dir, "rg1_small_uncompressed.dcm", tmp / kind, lambda ds: delattr(ds, "PixelData"))
    elif kind == "dicom_rows_lie_uncompressed.dcm":
        edited(dicom_dir, "rg1_small_uncompressed.dcm", tmp / kind, lambda ds: setattr(ds, "Rows", 4000))
    elif kind == "dicom_rows_lie_j2k.dcm":
        def lie(ds):
            ds.Rows, ds.Columns = 4000, 4000
        edited(dicom_dir, "rg1_small_j2k_lossless.dcm", tmp / kind, lie)
    elif kind == "dicom_rows_lie_jpeg.dcm":
        def lie(ds):
            ds.Rows, ds.Columns = 2048, 3000
        edited(dicom_dir, "cr_chest_jpeg_baseline.dcm", tmp / kind, lie)
    elif kind == "dicom_rows_smaller_than_data.dcm":
        edited(dicom_dir, "rg1_small_uncompressed.dcm", tmp / kind, lambda ds: setattr(ds, "Rows", 100))
    elif kind == "dicom_claims_65535x65535.dcm":
        def huge(ds):
            ds.Rows, ds.Columns = 65535, 65535
        edited(dicom_dir, "rg1_small_uncompressed.dcm", tmp / kind, huge)
    elif kind == "dicom_zero_rows.dcm":
        edited(dicom_dir, "rg1_small_uncompressed.dcm", tmp / kind, lambda ds: setattr(ds, "Rows", 0))
    elif kind == "dicom_magic_then_garbage.dcm":
        rng = np.random.default_rng(7)
        (tmp / kind).write_bytes(b"\x00" * 128 + b"DICM" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "a_directory.dcm":
        (tmp / kind).mkdir()
        shutil.copy(dicom_dir / "rg1_small_uncompressed.dcm", tmp / kind / "inside.dcm")
    elif kind == "missing.dcm":
        pass
    else:
        raise AssertionError(kind)
    return tmp / kind


BAD = {  # kind: words the reason must contain (case-insensitive)
    "empty.dcm": ["empty"],
    "empty.png": ["empty"],
    "text.dcm": ["not a recognised image format"],
    "text.png": ["not a recognised image format"],
    "truncated.png": ["truncated"],
    "truncated.jpeg": ["truncated"],
    "png_signature_only.png": ["damaged"],
    "png_bad_crc.png": ["damaged"],
    "png_bomb_100000x100000.png": ["10000000000 pixels", "decompression bomb"],
    "dicom_pixels_cut_uncompressed.dcm": ["pixel data", "less than expected"],
    "dicom_pixels_cut_j2k.dcm": ["pixel data", "cut short"],
    "dicom_pixels_cut_jpeg.dcm": ["pixel data", "cut short"],
    "dicom_header_cut.dcm": ["no pixel data"],
    "dicom_no_pixel_data.dcm": ["no pixel data"],
    "dicom_rows_lie_uncompressed.dcm": ["pixel data", "less than expected"],
    "dicom_rows_lie_j2k.dcm": ["cannot decode dicom pixel data", "jpeg 2000"],
    "dicom_rows_lie_jpeg.dcm": ["cannot decode dicom pixel data", "jpeg baseline"],
    "dicom_rows_smaller_than_data.dcm": ["rows/columns do not match"],
    "dicom_claims_65535x65535.dcm": ["65535x65535", "over the limit"],
    "dicom_zero_rows.dcm": ["empty"],
    "dicom_magic_then_garbage.dcm": ["dicom"],
    "a_directory.dcm": ["is a directory"],
    "missing.dcm": ["cannot open", "no such file"],
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_raises_one_clear_image_read_error(kind, tmp_path, dicom_dir, images_dir):
    path = make_bad(kind, tmp_path, dicom_dir, images_dir)
    with pytest.raises(ImageReadError) as info:  # ImageReadError and nothing else
        load(path)
    e = info.value
    assert e.path == str(path)
    assert str(e).startswith(f"{path}: ")
    for words in BAD[kind]:
        assert words.lower() in e.reason.lower(), e.reason
    assert "\n" not in str(e).strip()  # one line, fit for a CSV cell and a log


def test_truncated_dicom_at_any_point_is_an_image_read_error(dicom_dir, tmp_path):
    """Cut the real file at many points, header and pixel data alike: always ImageReadError, never a crash."""
    data = (dicom_dir / "rg1_small_uncompressed.dcm").read_bytes()
    cuts = list(range(1, 1400, 23)) + [len(data) // 2, len(data) - 1]
    for n in cuts:
        path = tmp_path / f"cut_{n}.dcm"
        path.write_bytes(data[:n])
        with pytest.raises(ImageReadError) as e:
            load(path)
        assert e.value.path == str(path)


def test_corrupt_bytes_inside_pixel_data_still_decode_or_fail_cleanly(dicom_dir, tmp_path):
    data = np.frombuffer((dicom_dir / "rg1_small_j2k_lossless.dcm").read_bytes(), dtype=np.uint8)
    rng = np.random.default_rng(3)
    for trial in range(5):
        damaged = data.copy()
        at = rng.integers(len(data) // 2, len(data) - 16, 8)
        damaged[at] = rng.integers(0, 256, 8, dtype=np.uint8)
        path = tmp_path / f"damaged_{trial}.dcm"
        path.write_bytes(damaged.tobytes())
        try:
            rg = load(path)
        except ImageReadError as e:
            assert e.path == str(path)
        else:
            assert rg.shape == (488, 460)


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    limit = 3 * 1024 ** 3  # address space: a reader that tries to allocate GBs fails here
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from cxrinspect.imaging import ImageReadError, load
    reasons = {}
    for path in sys.argv[1:]:
        try:
            load(path)
            reasons[path] = "LOADED"
        except ImageReadError as e:
            reasons[path] = e.reason
    # peak RSS of this process image: VmHWM (ru_maxrss would include the parent's RSS, inherited across vfork+exec)
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"reasons": reasons, "max_rss_kb": peak}))
""")


def test_memory_stays_bounded_on_bombs_and_lying_headers(tmp_path, dicom_dir):
    """Headers claiming huge images: refused or failed without allocating GBs (peak RSS in a fresh process)."""
    bombs = []
    for name, (w, h, depth, colour) in {"bomb_grey.png": (100_000, 100_000, 8, 0),
                                        "bomb_rgba16.png": (60_000, 60_000, 16, 6),
                                        "bomb_wide.png": (2 ** 31 - 1, 1, 8, 0)}.items():
        (tmp_path / name).write_bytes(png_claiming(w, h, depth, colour))
        bombs.append(tmp_path / name)

    def claim(rows, cols, frames=None):
        def edit(ds):
            ds.Rows, ds.Columns = rows, cols
            if frames:
                ds.NumberOfFrames = frames
        return edit

    for fixture, name, edit in [
        ("rg1_small_uncompressed.dcm", "just_under_limit.dcm", claim(9999, 9999)),
        ("cr_chest_jpeg_baseline.dcm", "jpeg_just_under_limit.dcm", claim(9999, 9999)),
        ("rg1_small_j2k_lossless.dcm", "j2k_just_under_limit.dcm", claim(9999, 9999)),
        ("rg1_small_uncompressed.dcm", "65535_squared.dcm", claim(65535, 65535)),
        ("rg1_small_multiframe.dcm", "billions_of_frames.dcm", claim(244, 230, 2 ** 31 - 1)),
    ]:
        bombs.append(edited(dicom_dir, fixture, tmp_path / name, edit))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, bombs)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for path, reason in result["reasons"].items():
        assert reason != "LOADED", path
        assert "memory" not in reason.lower(), (path, reason)  # refused or failed cleanly, not by running out
    assert "decompression bomb" in result["reasons"][str(tmp_path / "bomb_grey.png")]
    assert "over the limit" in result["reasons"][str(tmp_path / "65535_squared.dcm")]
    # the largest legitimate allocation is one frame under the 100-Mpixel limit (200 MB at 16 bits)
    assert result["max_rss_kb"] < 1024 * 1024, f"peak RSS {result['max_rss_kb'] / 1024:.0f} MB"
