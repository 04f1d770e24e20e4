"""Display: the DICOM linear window pinned on known values, explicit windows and the user's invert on real files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cxrinspect.imaging import Window, load, presentation, render, to_uint8
from cxrinspect.imaging.display import apply_window


def test_linear_window_matches_the_dicom_formula_on_known_values():
    # c=40, w=400 (a CT soft-tissue window): black at x <= -160, white at x > 239, 0.5 at x = c - 0.5
    x = np.array([-1000, -160, -159, 39.5, 40, 239, 239.5, 3000], dtype=np.float32)
    expected = [0, 0, 1 / 399, 0.5, 0.5 + 0.5 / 399, 1, 1, 1]
    np.testing.assert_allclose(apply_window(x, Window(40, 400)), expected, atol=1e-6)


def test_window_over_a_12_bit_range_maps_ends_exactly():
    x = np.array([0, 2047.5, 4095], dtype=np.float32)
    np.testing.assert_allclose(apply_window(x, Window(2048, 4096)), [0, 0.5, 1], atol=1e-7)
    assert Window(2048, 4096).low == 0 and Window(2048, 4096).high == 4095


def test_window_from_range_maps_low_to_black_and_high_to_white():
    w = Window.from_range(1057, 26324)
    assert (w.low, w.high) == (1057, 26324)
    np.testing.assert_allclose(apply_window(np.array([1000, 1057, 26324, 30000], np.float32), w), [0, 0, 1, 1],
                               atol=1e-7)
    assert Window.from_range(5, 5).width >= 1  # a constant image still gets a valid window


def test_width_one_is_a_threshold_not_a_division_by_zero():
    x = np.array([9, 9.5, 9.6, 10, 11], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings
        out = apply_window(x, Window(10, 1))
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 1])  # DICOM: x <= c - 0.5 -> black, else white
    assert out.dtype == np.float32


@pytest.mark.parametrize("center, width", [(10, 0.5), (10, 0), (float("nan"), 100), (10, float("inf"))])
def test_invalid_windows_are_refused(center, width):
    with pytest.raises(ValueError):
        Window(center, width)


def test_to_uint8_rounds_to_nearest_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-1, 0, 0.6 / 255, 0.499, 0.5, 1, 2], np.float32)),
                                  [0, 0, 1, 127, 128, 255, 255])


def test_render_with_an_explicit_window_on_a_real_radiograph(dicom_dir, dicom_window):
    rg = load(dicom_dir / "cr_chest_jpeg_baseline.dcm")
    center, width = 100.0, 60.0
    view = render(rg, Window(center, width))
    expected = np.rint(dicom_window(rg.pixels, center, width) * 255).astype(np.uint8)
    np.testing.assert_array_equal(view, expected)
    assert not np.array_equal(view, render(rg))  # the window really overrode the default
    # a narrow window saturates: much more pure black and pure white than the default view
    saturated, default_saturated = np.isin(view, (0, 255)).mean(), np.isin(render(rg), (0, 255)).mean()
    assert saturated > 0.3 and default_saturated < 0.01


def test_user_invert_on_top_of_the_file(dicom_dir):
    mono2 = load(dicom_dir / "cr_chest_jpeg_baseline.dcm")
    mono1 = load(dicom_dir / "cr_chest_monochrome1.dcm")
    w = Window(120, 180)
    a = render(mono2, w)
    assert np.array_equal(render(mono2, w, invert=True).astype(int), 255 - a.astype(int))
    # the user's invert on a MONOCHROME1 file undoes the file's inversion: two inversions, deliberately
    assert np.array_equal(render(mono1, w, invert=True), a)
    assert np.array_equal(render(mono1, invert=True), render(mono2))


def test_default_presentation_of_8_bit_data_is_value_over_255(images_dir):
    rg = load(images_dir / "IM-0003-0001.jpeg")
    p = presentation(rg)
    assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1
    np.testing.assert_allclose(p, rg.pixels / 255.0, atol=1e-6)
    np.testing.assert_array_equal(render(rg), np.rint(rg.pixels).astype(np.uint8))


def test_presentation_does_not_modify_the_radiograph(dicom_dir):
    rg = load(dicom_dir / "rg1_small_uncompressed.dcm")
    before = rg.pixels.copy()
    render(rg, Window(5000, 1000), invert=True)
    presentation(rg)
    assert np.array_equal(rg.pixels, before) and rg.window == Window(15000, 30000)
