"""Compactness metrics pinned down on constructed maps: a point, a blob, uniform noise, two spots."""

import numpy as np
import pytest

from cxrinspect.scan.compactness import SCORE, best_window, compactness

N = 64


def point(r=20, c=30):
    m = np.zeros((N, N))
    m[r, c] = 1.0
    return m


def blob(sigma=8.0, r=32, c=32):
    yy, xx = np.mgrid[:N, :N]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma ** 2))


def test_a_single_hot_pixel_is_as_compact_as_can_be():
    m = compactness(point())
    assert m.window_share == {3: 1.0, 5: 1.0, 9: 1.0}
    top, left, bottom, right = m.window_box[3]
    assert top <= 20 < bottom and left <= 30 < right and (bottom - top, right - left) == (3, 3)
    assert m.top1_share == 1.0
    assert m.area50 == pytest.approx(1 / N ** 2)
    assert m.entropy == 0.0
    assert (m.component_area, m.component_box, m.component_centre) == (1, (20, 30, 21, 31), (20.0, 30.0))
    assert m.score == m.window_share[3] == m.to_dict()[SCORE]


def test_uniform_noise_is_spread_out():
    rng = np.random.default_rng(0)
    m = compactness(rng.uniform(0.5, 1.0, (N, N)))
    assert m.window_share[3] < 2.0 * 9 / N ** 2
    assert m.top1_share < 0.02
    assert 0.35 < m.area50 < 0.5  # half the mass needs nearly half the pixels
    assert m.entropy > 0.99


def test_a_blob_sits_in_between_and_its_component_is_centred():
    m = compactness(blob(sigma=6))
    p = compactness(point())
    u = compactness(np.ones((N, N)))
    assert u.score < m.score < p.score
    assert u.entropy > m.entropy > p.entropy
    # the half-maximum disc of a Gaussian: radius sigma * sqrt(2 ln 2)
    assert m.component_area == pytest.approx(np.pi * (6 * np.sqrt(2 * np.log(2))) ** 2, rel=0.1)
    assert m.component_centre == pytest.approx((32.0, 32.0))
    assert m.component_box == (25, 25, 40, 40)


def test_two_distant_spots_split_the_mass():
    two = point(5, 5) + point(50, 55) * 0.6
    m = compactness(two)
    assert m.window_share[3] == pytest.approx(1 / 1.6)
    assert m.window_box[3][0] <= 5 < m.window_box[3][2]  # the stronger spot wins
    assert m.component_area == 1 and m.component_centre == (5.0, 5.0)
    assert m.component_share == pytest.approx(1 / 1.6)
    assert m.area50 == pytest.approx(1 / N ** 2)  # the stronger spot alone holds over half


def test_best_window_matches_brute_force():
    rng = np.random.default_rng(3)
    m = rng.random((17, 23)) ** 4
    for k in (1, 3, 5, 30):
        mass, (t, l, b, r) = best_window(m, k)
        kh, kw = min(k, 17), min(k, 23)
        brute = max(m[i:i + kh, j:j + kw].sum() for i in range(17 - kh + 1) for j in range(23 - kw + 1))
        assert mass == pytest.approx(brute) and m[t:b, l:r].sum() == pytest.approx(brute)


def test_degenerate_and_invalid_maps():
    zero = compactness(np.zeros((8, 8)))
    assert zero.score == 0.0 and zero.entropy == 1.0
    with pytest.raises(ValueError, match="negative"):
        compactness(-point())
    with pytest.raises(ValueError, match="NaN"):
        compactness(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        compactness(np.ones(5))
