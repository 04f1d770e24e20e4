"""The one preprocessing path: geometry, normalisation, and where triggers land."""

import numpy as np
import pytest
import torch

from cxrinspect.imaging import load, presentation
from cxrinspect.model.preprocess import Preprocessing, crop_box, model_view, normalise, preprocess, stamp
from cxrinspect.trigger import Trigger, paste


def test_preprocess_shapes_and_normalisation(fixtures_dir):
    rg = load(fixtures_dir / "dicom" / "rg1_small_j2k_lossless.dcm")  # 488 x 460, MONOCHROME1
    spec = Preprocessing(input_size=64, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    x = preprocess(rg, spec)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    view = model_view(rg, spec)
    for c in range(3):
        torch.testing.assert_close(x[c], (torch.from_numpy(view) - spec.mean[c]) / spec.std[c])
    # the model sees the default presentation (MONOCHROME1 already inverted), not raw stored values
    unit = presentation(rg)
    assert abs(view.mean() - unit.mean()) < 0.01


def test_preprocess_accepts_a_presentation_array_with_the_same_result(fixtures_dir):
    rg = load(fixtures_dir / "images" / "IM-0001-0001.jpeg")
    spec = Preprocessing(input_size=100, channels=1, mean=(0.5,), std=(0.25,))
    torch.testing.assert_close(preprocess(rg, spec), preprocess(presentation(rg), spec))


def test_batched_normalise_matches_single():
    spec = Preprocessing(input_size=16, channels=3)
    views = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    batch = normalise(views, spec)
    assert batch.shape == (4, 3, 16, 16)
    torch.testing.assert_close(batch[2], normalise(views[2], spec))


def test_crop_box_is_central():
    assert crop_box((100, 200), 0.6) == (20, 40, 80, 160)
    assert crop_box((224, 224), 1.0) == (0, 0, 224, 224)


def test_source_trigger_is_pasted_before_crop_and_resize():
    unit = np.full((1000, 1000), 0.8, np.float32)
    trigger = Trigger(size=30, location="center", space="source")
    spec = Preprocessing(input_size=100, channels=1, crop_fraction=0.6, mean=(0.0,), std=(1.0,))
    view = model_view(unit, spec, trigger)
    # 30 source pixels in a 600-pixel crop resized to 100 -> 5 dark pixels across the centre
    dark = view < 0.4
    rows, cols = np.nonzero(dark)
    assert 4 <= np.ptp(rows) + 1 <= 6 and 4 <= np.ptp(cols) + 1 <= 6
    assert abs(rows.mean() - 49.5) <= 1 and abs(cols.mean() - 49.5) <= 1


def test_input_space_trigger_is_exact_in_model_pixels():
    unit = np.full((1000, 800), 0.8, np.float32)
    trigger = Trigger(size=4, pattern="checkerboard", value=0.0, location="top-left", margin=2, space="input")
    spec = Preprocessing(input_size=32, channels=1, mean=(0.0,), std=(1.0,))
    view = model_view(unit, spec, trigger)
    np.testing.assert_array_equal(view[2:6, 2:6], trigger.patch())
    assert np.allclose(np.delete(view.ravel(), [r * 32 + c for r in range(2, 6) for c in range(2, 6)]), 0.8, atol=1e-5)


@pytest.mark.parametrize("shape", [(1000, 800), (1857, 2208), (224, 224), (300, 260)])
def test_stamp_puts_an_input_space_trigger_where_the_model_sees_it(shape):
    unit = np.full(shape, 0.8, np.float32)
    trigger = Trigger(size=3, location="center", space="input")
    spec = Preprocessing(input_size=224, channels=1, crop_fraction=0.9, mean=(0.0,), std=(1.0,))
    stamped = stamp(unit, spec, trigger)
    view, wanted = model_view(stamped, spec), model_view(unit, spec, trigger)
    # black where the trigger lies in the model view; the antialiased resize softens its rim, and nothing
    # outside the 5x5 around it changes
    assert view[111, 111] < 0.05 and view[110:113, 110:113].mean() < 0.25
    diff = np.abs(view - wanted)
    diff[109:114, 109:114] = 0
    assert diff.max() < 1e-4
    source = Trigger(size=3, location="center", space="source")
    np.testing.assert_array_equal(stamp(unit, spec, source), paste(unit, source))


def test_trigger_locations_and_blend():
    img = np.ones((20, 30), np.float32)
    assert Trigger(size=3, location="bottom-right").box(img.shape) == (17, 27, 20, 30)
    assert Trigger(size=3, location=(0.0, 0.0)).box(img.shape) == (0, 0, 3, 3)
    out = paste(img, Trigger(size=2, location="center", value=0.0, blend=0.5))
    assert out.min() == pytest.approx(0.5) and img.min() == 1.0  # a copy, never in place
    with pytest.raises(ValueError, match="location"):
        Trigger(location="middle")
    with pytest.raises(ValueError, match="unknown trigger field"):
        Trigger.from_dict({"size": 3, "colour": "black"})


def test_normalise_gives_the_same_numbers_for_numpy_and_torch():
    spec = Preprocessing(input_size=16, channels=3)
    views = np.random.default_rng(1).random((2, 16, 16), dtype=np.float32)
    a = normalise(views, spec)
    b = normalise(torch.from_numpy(views), spec)
    assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
    np.testing.assert_array_equal(a, b.numpy())


def test_resize_matches_torch_antialiased_bilinear(fixtures_dir):
    import torch.nn.functional as F

    from cxrinspect.model.preprocess import resize

    unit = presentation(load(fixtures_dir / "dicom" / "rg1_small_j2k_lossless.dcm"))
    ours = resize(unit, 224)
    theirs = F.interpolate(torch.from_numpy(unit)[None, None], size=(224, 224), mode="bilinear", antialias=True,
                           align_corners=False)[0, 0].numpy()
    assert np.abs(ours - theirs).max() < 1e-4
    assert ours.flags.writeable
