"""How a saliency map is shown: scaled to [0, 1], smoothed over one model pixel on the source grid, blended."""

from __future__ import annotations

import numpy as np
import pytest

from cxrinspect.model.preprocess import Preprocessing
from cxrinspect.saliency.overlay import blend, display_map, shown_map


def test_display_map_scales_by_a_high_percentile_and_clips():
    m = np.zeros((100, 100), np.float32)
    m[:10] = 1.0  # 10% of the pixels at 1
    m[0, 0] = 1000.0  # one extreme pixel does not wash out the rest
    d = display_map(m)
    assert d.min() == 0.0 and d.max() == 1.0 and d[5, 50] == pytest.approx(1.0)
    assert display_map(np.zeros((4, 4))).max() == 0.0


def test_shown_map_smooths_over_one_model_pixel_per_axis_and_leaves_cam_alone():
    spec = Preprocessing(input_size=32, crop_fraction=0.5)
    m = np.zeros((256, 128), np.float32)  # one model pixel = 256*0.5/32 = 4 rows by 128*0.5/32 = 2 columns
    m[128, 64] = 1.0
    shown = shown_map(m, "gradient", spec)
    np.testing.assert_allclose(shown, display_map(m, smooth=(4.0, 2.0)))
    assert not np.allclose(shown, display_map(m, smooth=(2.0, 4.0)))
    rows, cols = np.nonzero(shown[:, 64])[0], np.nonzero(shown[128, :])[0]
    assert len(rows) > len(cols) > 1  # spread further along the axis with larger model pixels
    np.testing.assert_array_equal(shown_map(m, "cam", spec), display_map(m))


def test_blend_keeps_cold_regions_grey():
    grey = np.full((8, 8), 100, np.uint8)
    hot = np.zeros((8, 8), np.float32)
    hot[0, 0] = 1.0
    rgb = blend(grey, hot, 0.5)
    assert rgb.shape == (8, 8, 3) and (rgb[7, 7] == 100).all() and not (rgb[0, 0] == 100).all()
    with pytest.raises(ValueError):
        blend(grey, hot[:4], 0.5)
