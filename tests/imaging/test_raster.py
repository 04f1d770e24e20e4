"""Raster images through Pillow, all made in tmp_path from a real Kermany chest X-ray."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrinspect.imaging import Window, load, render

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("name", ["IM-0001-0001.jpeg", "IM-0003-0001.jpeg", "person1000_bacteria_2931.jpeg",
                                  "person1000_virus_1681.jpeg"])
def test_kermany_jpegs_load(images_dir, name):
    rg = load(images_dir / name)
    assert rg.format == "jpeg" and rg.shape == (224, 224)
    assert rg.window == Window(128, 256)
    assert rg.warnings == []  # RGB with equal channels: grey already, nothing to warn about
    with Image.open(images_dir / name) as img:
        assert img.mode == "RGB"
        np.testing.assert_allclose(rg.pixels, np.asarray(img.convert("L")), atol=0.5)
    assert rg.pixels.std() > 20


def test_8_bit_grey_png(kermany_grey, tmp_path):
    path = tmp_path / "grey8.png"
    Image.fromarray(kermany_grey).save(path)
    rg = load(path)
    assert rg.format == "png" and rg.metadata["bits"] == 8 and rg.metadata["mode"] == "L"
    assert np.array_equal(rg.pixels, kermany_grey)
    assert rg.window == Window(128, 256) and rg.warnings == []
    np.testing.assert_array_equal(render(rg), kermany_grey)  # 8-bit data shows as stored


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("TIFF", ".tif")])
def test_16_bit_grey_keeps_full_depth(kermany_grey, tmp_path, fmt, suffix):
    deep = kermany_grey.astype(np.uint16) * 257 + 3  # 3..65535-ish: 16-bit values, none fit in 8 bits
    path = tmp_path / f"grey16{suffix}"
    Image.fromarray(deep).save(path, format=fmt)
    rg = load(path)
    assert rg.pixels.dtype == np.uint16
    assert np.array_equal(rg.pixels, deep)
    assert rg.metadata["bits"] == 16
    distinct = np.unique(rg.pixels)
    assert len(distinct) > 100 and (distinct > 255).sum() > 100
    assert rg.window == Window.from_range(float(deep.min()), float(deep.max()))
    # the view uses the full range: the darkest pixel is black, the brightest white
    view = render(rg)
    assert view[deep == deep.min()].max() == 0 and view[deep == deep.max()].min() == 255


def test_8_bit_tiff_and_bmp(kermany_grey, tmp_path):
    for fmt, suffix in [("TIFF", ".tiff"), ("BMP", ".bmp")]:
        path = tmp_path / f"grey{suffix}"
        Image.fromarray(kermany_grey).save(path, format=fmt)
        rg = load(path)
        assert rg.format == fmt.lower() and rg.metadata["bits"] == 8
        assert np.array_equal(rg.pixels, kermany_grey)


def test_colour_rgb_is_converted_to_grey_with_a_warning(kermany_grey, tmp_path):
    g = kermany_grey.astype(np.float64)
    rgb = np.stack([g, g * 0.8, g * 0.5], axis=-1).round().astype(np.uint8)  # a sepia-tinted radiograph
    path = tmp_path / "tinted.png"
    Image.fromarray(rgb).save(path)
    rg = load(path)
    assert any("colour" in w and "grey" in w for w in rg.warnings)
    np.testing.assert_allclose(rg.pixels, rgb @ LUMA, atol=1e-3)  # ITU-R BT.601 luma, explicit


def test_grey_rgb_is_grey_without_a_colour_warning(kermany_grey, tmp_path):
    path = tmp_path / "rgb_grey.png"
    Image.fromarray(np.stack([kermany_grey] * 3, axis=-1)).save(path)
    rg = load(path)
    assert rg.warnings == []
    np.testing.assert_allclose(rg.pixels, kermany_grey, atol=1e-3)


def test_rgba_ignores_alpha_with_a_warning(kermany_grey, tmp_path):
    rgba = np.dstack([kermany_grey] * 3 + [np.full_like(kermany_grey, 40)])  # mostly transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    rg = load(path)
    assert rg.metadata["mode"] == "RGBA"
    assert any("alpha" in w for w in rg.warnings)
    np.testing.assert_allclose(rg.pixels, kermany_grey, atol=1e-3)  # not pre-multiplied, not blended


def test_grey_with_alpha(kermany_grey, tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([kermany_grey, np.full_like(kermany_grey, 200)]), mode="LA").save(path)
    rg = load(path)
    assert any("alpha" in w for w in rg.warnings)
    assert np.array_equal(rg.pixels, kermany_grey)


def test_palette_image_is_converted_through_its_palette(images_dir, kermany_grey, tmp_path):
    g = kermany_grey.astype(np.float64)
    tinted = Image.fromarray(np.stack([g, g * 0.9, g * 0.7], axis=-1).round().astype(np.uint8))
    paletted = tinted.quantize(64)
    assert paletted.mode == "P"
    path = tmp_path / "palette.png"
    paletted.save(path)
    rg = load(path)
    assert any("palette" in w for w in rg.warnings)
    expected = np.asarray(paletted.convert("RGB"), dtype=np.float64) @ LUMA
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-3)
    assert np.abs(rg.pixels - np.asarray(tinted.convert("L"))).mean() < 4  # 64 colours approximate the image well
    assert len(np.unique(rg.pixels)) <= 64  # the indices were not read as grey levels


def test_grey_palette_with_transparency(kermany_grey, tmp_path):
    paletted = Image.fromarray(kermany_grey).quantize(32)
    paletted.info["transparency"] = 0
    path = tmp_path / "palette_t.png"
    paletted.save(path, transparency=0)
    rg = load(path)
    expected = np.asarray(paletted.convert("RGB"), dtype=np.float64) @ LUMA
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-3)


def test_bilevel_image(kermany_grey, tmp_path):
    path = tmp_path / "bilevel.png"
    bw = Image.fromarray(kermany_grey).point(lambda v: 255 if v > 128 else 0).convert("1")
    bw.save(path)
    rg = load(path)
    assert set(np.unique(rg.pixels)) == {0, 255}
    assert np.array_equal(rg.pixels == 255, kermany_grey > 128)


def test_multi_frame_tiff_gives_first_frame_and_warning(kermany_grey, tmp_path):
    path = tmp_path / "pages.tif"
    first, second = Image.fromarray(kermany_grey), Image.fromarray(255 - kermany_grey)
    first.save(path, save_all=True, append_images=[second])
    rg = load(path)
    assert any("multi-frame" in w for w in rg.warnings)
    assert np.array_equal(rg.pixels, kermany_grey)
