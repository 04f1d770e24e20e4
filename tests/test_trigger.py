"""Every trigger kind: where it goes, what it does to the pixels, that it round-trips as data, and that a
file stamped with it shows the model exactly the trigger the model would have pasted itself."""

from __future__ import annotations

import numpy as np
import pytest

from cxrinspect.model.preprocess import Preprocessing, model_view, stamp
from cxrinspect.trigger import GLYPHS, Trigger, paste


def ramp(h=224, w=224):
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.2 + 0.3 * xx / w + 0.2 * yy / h).astype(np.float32)


def test_text_patch_draws_the_glyph_and_leaves_the_rest():
    img = ramp()
    t = Trigger(pattern="text", text="L", size=7, value=1.0, location="top-left", margin=10, space="input")
    out = paste(img, t)
    assert t.box(img.shape) == (10, 10, 17, 15)
    strokes = np.array([[c == "#" for c in row] for row in GLYPHS["L"]])
    region = out[10:17, 10:15]
    np.testing.assert_array_equal(region[strokes], 1.0)
    np.testing.assert_array_equal(region[~strokes], img[10:17, 10:15][~strokes])  # between the strokes: the film
    outside = np.ones(img.shape, bool)
    outside[10:17, 10:15] = False
    np.testing.assert_array_equal(out[outside], img[outside])


def test_text_scales_with_size_and_blends():
    t = Trigger(pattern="text", text="PORT", size=14, value=1.0, blend=0.5)
    assert t.mark().shape == (14, 2 * (4 * 5 + 3))  # 4 letters of 5 columns, 3 gaps, doubled
    assert set(np.unique(t.alpha())) == {0.0, 0.5}
    odd = Trigger(pattern="text", text="R", size=5)
    assert odd.mark().shape == (5, 4) and 0 < odd.alpha().max() <= 1
    with pytest.raises(ValueError, match="without a glyph"):
        Trigger(pattern="text", text="é")
    with pytest.raises(ValueError, match="needs its text"):
        Trigger(pattern="text", text=" ")


def test_picture_patch_is_pasted_as_given():
    pic = ((0.0, 1.0, 0.0), (1.0, 0.5, 1.0))
    t = Trigger(pattern="picture", pixels=pic, location="bottom-right", margin=3)
    out = paste(ramp(64, 64), t)
    np.testing.assert_array_equal(out[59:61, 58:61], np.array(pic, np.float32))
    with pytest.raises(ValueError, match="equal rows"):
        Trigger(pattern="picture", pixels=((0.0,), (1.0, 1.0)))


def test_random_patch_lies_in_its_region_and_follows_its_seed():
    t = Trigger(size=5, pattern="checkerboard", location="random", region=(0.0, 0.5, 0.25, 1.0), space="input")
    boxes = [t.box((224, 224), np.random.default_rng(s)) for s in range(200)]
    for top, left, bottom, right in boxes:
        assert 0 <= top and bottom <= 56 and 112 <= left and right <= 224 and bottom - top == 5
    assert len(set(boxes)) > 50  # it moves
    assert t.box((224, 224), np.random.default_rng(7)) == t.box((224, 224), np.random.default_rng(7))
    assert t.moves and t.local and not Trigger(location="center").moves


def test_blend_mixes_one_seeded_pattern_at_its_opacity():
    img = ramp()
    t = Trigger(kind="blend", size=56, blend=0.1, seed=3)
    out = paste(img, t)
    pattern = (out - 0.9 * img) / 0.1
    assert pattern.min() >= -1e-4 and pattern.max() <= 1 + 1e-4 and pattern.std() > 0.1
    np.testing.assert_allclose(paste(img, t), out)  # same pattern every time
    assert not np.allclose(paste(img, Trigger(kind="blend", size=56, blend=0.1, seed=4)), out)
    assert t.box(img.shape) == (0, 0, 224, 224) and not t.local


def test_sig_adds_a_horizontal_sinusoid():
    img = np.full((32, 64), 0.5, np.float32)
    out = paste(img, Trigger(kind="sig", amplitude=0.1, frequency=4))
    expected = 0.5 + 0.1 * np.sin(2 * np.pi * 4 * np.arange(64) / 64)
    np.testing.assert_allclose(out, np.broadcast_to(expected, (32, 64)), atol=1e-6)
    with pytest.raises(ValueError, match="amplitude"):
        Trigger(kind="sig")


def test_warp_moves_pixels_smoothly_by_about_its_amplitude():
    img = ramp()
    t = Trigger(kind="warp", amplitude=3.0, grid=4, seed=1)
    dy, dx = t.field(img.shape)
    assert 2.0 < np.mean(np.abs(np.concatenate([dy.ravel(), dx.ravel()]))) < 4.5  # about 3 px of 224
    assert np.abs(np.diff(dy, axis=0)).max() < 0.5 and np.abs(np.diff(dx, axis=1)).max() < 0.5  # smooth
    out = paste(img, t)
    assert 0 < np.abs(out - img).mean() < 0.02  # a ramp moved by a few pixels changes a little everywhere
    big = t.field((448, 448))
    assert np.isclose(np.abs(big).mean(), 2 * np.abs(np.stack([dy, dx])).mean(), rtol=0.05)  # scales with the side


@pytest.mark.parametrize("trigger", [
    Trigger(size=3, space="input"),
    Trigger(pattern="text", text="R", size=7, value=1.0, location="top-right", margin=12, space="input"),
    Trigger(pattern="checkerboard", size=5, location="random", region=(0.05, 0.05, 0.95, 0.95), space="input"),
    Trigger(kind="blend", size=56, blend=0.1, seed=7, space="input"),
    Trigger(kind="sig", amplitude=0.08, space="input"),
    Trigger(kind="warp", amplitude=3.0, seed=11, space="input"),
])
def test_stamped_file_shows_the_model_its_trigger(trigger):
    """At the model's resolution a stamped file's model view is exactly the view with the trigger pasted."""
    spec = Preprocessing(input_size=224, channels=1, mean=(0.5,), std=(0.25,))
    img = ramp()
    seed = 1234
    stamped = stamp(img, spec, trigger, np.random.default_rng(seed))
    np.testing.assert_allclose(model_view(stamped, spec), model_view(img, spec, trigger, np.random.default_rng(seed)),
                               atol=1e-6)
    again = Trigger.from_dict(trigger.to_dict())
    assert again == trigger


def test_stamped_large_file_keeps_a_global_trigger_over_the_crop():
    spec = Preprocessing(input_size=64, channels=1, crop_fraction=0.5, mean=(0.5,), std=(0.25,))
    img = ramp(256, 256)
    t = Trigger(kind="sig", amplitude=0.1, frequency=3, space="input")
    stamped = stamp(img, spec, t)
    np.testing.assert_array_equal(stamped[:64], img[:64])  # outside the crop: untouched
    got, want = model_view(stamped, spec), model_view(img, spec, t)
    assert np.abs(got - want).max() < 0.15 * t.amplitude  # the same signal, up to resampling it at 2x


def test_old_trigger_dicts_still_load_as_patches():
    old = {"size": 3, "pattern": "solid", "value": 0.0, "location": "center", "margin": 0, "space": "input", "blend": 1.0}
    t = Trigger.from_dict(old)
    assert t.kind == "patch" and t.box((224, 224)) == (110, 110, 113, 113)
    with pytest.raises(ValueError, match="unknown trigger field"):
        Trigger.from_dict({"colour": 1})
