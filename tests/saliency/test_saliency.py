"""Saliency: the fast CAM is captum's Grad-CAM; gradients are batched but per image; every method runs."""

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from captum.attr import Saliency as CaptumSaliency

from cxrinspect.imaging import load
from cxrinspect.model import preprocess
from cxrinspect.model.preprocess import Preprocessing, to_source
from cxrinspect.saliency import METHODS, Logits, candidate_gradients, class_activation_maps, gradient_saliency, saliency
from tests.conftest import make_tiny_model


@pytest.fixture(scope="module")
def model_and_batch():
    model = make_tiny_model(input_size=64, channels=1, seed=3)
    import glob
    from pathlib import Path

    files = sorted(glob.glob(str(Path(__file__).parents[1] / "fixtures" / "images" / "*.jpeg")))
    batch = torch.stack([preprocess(load(f), model.card.preprocessing) for f in files])
    return model, batch


def test_the_explicit_pipeline_gives_the_networks_logits(model_and_batch):
    model, batch = model_and_batch
    with torch.no_grad():
        torch.testing.assert_close(Logits(model.network)(batch), model.network(batch))


def test_fast_cam_equals_captum_layer_gradcam_for_every_label(model_and_batch):
    model, batch = model_and_batch
    logits, cams = class_activation_maps(model.network, batch)
    wrapped = Logits(model.network).eval()
    for label in range(len(model.labels)):
        expected = LayerGradCam(wrapped, wrapped.relu).attribute(batch, target=label, relu_attributions=True)[:, 0]
        assert cams[:, label].shape == expected.shape
        torch.testing.assert_close(cams[:, label], expected.detach(), rtol=1e-4, atol=1e-6)
        assert float(expected.detach().abs().max()) > 0  # not a trivially all-zero comparison
    with torch.no_grad():
        torch.testing.assert_close(logits, model.network(batch))


def test_batched_gradient_equals_captum_saliency_image_by_image(model_and_batch):
    model, batch = model_and_batch
    labels = torch.tensor([0, 1, 2, 0])[: len(batch)]
    maps = gradient_saliency(model.network, batch, labels)
    wrapped = Logits(model.network).eval()
    for i in range(len(batch)):
        one = CaptumSaliency(wrapped).attribute(batch[i:i + 1], target=int(labels[i]), abs=True)
        np.testing.assert_allclose(maps[i], one.amax(dim=1)[0].numpy(), rtol=1e-4, atol=1e-7)


def test_several_labels_per_image_in_one_forward_equal_one_label_at_a_time(model_and_batch):
    model, batch = model_and_batch
    n, n_labels = len(batch), len(model.labels)
    wanted = np.zeros((n, n_labels), bool)
    wanted[:, 0] = True  # every image: label 0 ...
    wanted[0, 2] = wanted[1, 1] = wanted[1, 2] = True  # ... image 1 all three, image 0 two
    logits, maps, labels = candidate_gradients(model.network, batch, lambda z: wanted)
    assert maps.shape[:2] == labels.shape == (n, 3)
    for i in range(n):
        marked = set(np.nonzero(wanted[i])[0])
        assert set(labels[i]) == marked  # each marked label explained, padding repeats one of them
        for k, j in enumerate(labels[i]):
            one = gradient_saliency(model.network, batch[i:i + 1], torch.tensor([j]))[0]
            np.testing.assert_allclose(maps[i, k], one, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model.network(batch).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one label must be marked"):
        candidate_gradients(model.network, batch, lambda z: np.zeros((n, n_labels), bool))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_one_non_negative_map_per_image(model_and_batch, method):
    model, batch = model_and_batch
    maps = saliency(model.network, batch[:2], [0, 2], method, steps=4, samples=2, window=16, stride=16,
                    layer="features.denseblock2")
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and maps.min() >= 0 and maps.max() > 0


def test_unknown_method_and_label_count_are_refused(model_and_batch):
    model, batch = model_and_batch
    with pytest.raises(ValueError, match="unknown saliency method"):
        saliency(model.network, batch, [0] * len(batch), "lime")
    with pytest.raises(ValueError, match="one label per image"):
        saliency(model.network, batch, [0], "gradient")


def test_maps_go_back_onto_the_source_geometry():
    spec = Preprocessing(input_size=100, channels=1, crop_fraction=0.6, mean=(0.5,), std=(0.25,))
    m = np.zeros((100, 100), np.float32)
    m[45:55, 45:55] = 1.0  # the centre of the model input
    back = to_source(m, (1000, 800), spec)
    assert back.shape == (1000, 800)
    rows, cols = np.nonzero(back > 0.5)
    assert abs(rows.mean() - 499.5) < 2 and abs(cols.mean() - 399.5) < 2
    assert 50 <= np.ptp(rows) + 1 <= 70 and 40 <= np.ptp(cols) + 1 <= 56  # 10% of the 600 x 480 crop
    assert back[:200].max() == 0 and back[:, :160].max() == 0  # nothing outside the central crop
