"""Raster images (PNG, JPEG, TIFF, BMP, GIF, ...) through Pillow, converted to grey explicitly."""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from .limits import MAX_PIXELS
from .radiograph import ImageReadError, Radiograph, Window, luma

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow refuses twice this itself; we refuse at the limit (below)



def _grey(img: Image.Image, notes: list[str]) -> tuple[np.ndarray, int]:
    """Grey pixels and their bit depth (8 for 8-bit-per-channel modes)."""
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
        notes.append("palette image converted to grey")
        mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint16), 8
    if mode.startswith("I;16"):
        return np.asarray(img, dtype=np.uint16), 16
    if mode in ("I", "F"):
        return np.asarray(img, dtype=np.float32), 32
    if mode in ("LA", "La"):
        notes.append("alpha channel ignored")
        return np.asarray(img.getchannel(0), dtype=np.uint16), 8
    if mode in ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("RGBA", "RGBa"):
            notes.append("alpha channel ignored")
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            notes.append(f"colour image ({mode}) converted to grey (ITU-R BT.601 luma)")
        return luma(rgb), 8
    raise ValueError(f"unsupported Pillow mode {mode}")


def read_raster(path: str) -> Radiograph:
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(path, f"image claims {w}x{h} pixels, over the limit of {MAX_PIXELS:,} "
                                           "(possible decompression bomb)")
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                notes.append(f"multi-frame image ({n_frames} frames): showing the first frame only")
                img.seek(0)
            fmt = img.format or "raster"
            img.load()  # (size checked above: no warnings filter here, catch_warnings is not thread-safe)
            mode = img.mode
            pixels, bits = _grey(img, notes)
    except ImageReadError:
        raise
    except UnidentifiedImageError as e:  # only called for files whose first bytes are a raster signature
        raise ImageReadError(path, "damaged or unsupported image: the signature says PNG/JPEG/TIFF/BMP/... "
                                   "but Pillow cannot read its header") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(path, f"image too large (possible decompression bomb): {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise ImageReadError(path, f"cannot decode image ({type(e).__name__}: {e})") from e
    # 8-bit data keeps its natural 0..255 scale (value / 255); deeper data is windowed over its range
    window = Window(128.0, 256.0) if bits == 8 else Window.from_range(float(pixels.min()), float(pixels.max()))
    metadata = {"format": fmt, "size": f"{w}x{h}", "mode": mode, "bits": bits,
                "window": f"{window.center:g}/{window.width:g}"}
    return Radiograph(path=path, pixels=np.ascontiguousarray(pixels), window=window, format=fmt.lower(),
                      metadata=metadata, warnings=notes)
