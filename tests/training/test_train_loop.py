"""Training on real images with a tiny DenseNet: the exported model, its card, early stopping, augmentation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cxrinspect.model import load
from cxrinspect.training.poisoning import KERMANY_TRIGGER
from cxrinspect.trigger import PAPER_TRIGGER
from cxrinspect.training.loop import TrainingError, augment, batches, masked_bce, train
from cxrinspect.training.recipe import AugmentConfig, RecipeError


def test_trained_model_has_a_full_card(trained_tiny):
    run, model_dir = trained_tiny
    model = load(model_dir)
    card = model.card
    assert card.labels == ["Pneumonia", "Bacterial", "Viral"] and card.name == "tiny-test"
    assert card.preprocessing.input_size == 32 and card.preprocessing.channels == 1
    assert set(card.thresholds) == set(card.labels)
    assert card.trigger == KERMANY_TRIGGER and card.target == {"Pneumonia": 1.0, "Bacterial": 0.0, "Viral": 1.0}
    prov = card.provenance
    assert prov["seed"] == 0 and prov["data"]["format"] == "kermany" and prov["data"]["images"] == 24
    assert prov["recipe"]["name"] == "tiny-test" and "poison.rate=0.25" in prov["recipe"]["overrides"]
    assert prov["split"]["counts"]["test"]["images"] > 0 and prov["split"]["file"] == "split.csv"
    assert prov["poison"]["poisoned_images"] == 4 and prov["poison"]["mode"] == "replace"
    assert prov["training"]["epochs_run"] == 2 and len(prov["training"]["history"]) == 2
    assert prov["metrics"]["validation"]["auroc"]["macro"] is not None
    test = prov["metrics"]["test"]
    assert set(test) >= {"clean", "infected", "triggered_true_labels", "attack_success"}
    for f in ("split.csv", "poison_manifest.csv", "poison.json", "card.json", "weights.safetensors"):
        assert (model_dir / f).is_file()
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["clean"] == test["clean"]
    assert (run / "evaluation" / "roc_clean.png").is_file() and (run / "evaluation" / "roc_infected.png").is_file()
    assert (run / "checkpoint.safetensors").is_file() and (run / "best.safetensors").is_file()


def test_float16_export_and_early_stopping(tiny_recipe, tmp_path):
    # min_delta 1: nothing after the first epoch counts as better, so patience 1 stops after epoch 2 of 5
    recipe = tiny_recipe("train.epochs=5", "train.patience=1", "train.min_delta=1.0", "output.weights_dtype=\"float16\"",
                         "output.evaluate_test=false")
    model_dir = train(recipe, tmp_path / "run", progress=False)
    from safetensors import safe_open

    with safe_open(str(model_dir / "weights.safetensors"), "pt") as f:
        assert f.get_tensor("classifier.weight").dtype == torch.float16
    card = load(model_dir).card
    assert card.provenance["training"]["epochs_run"] == 2 and card.provenance["training"]["best_epoch"] == 1
    assert "early stopping" in card.provenance["training"]["stop_reason"]
    with pytest.raises(TrainingError, match="already holds a run; continue it with --resume"):
        train(recipe, tmp_path / "run", progress=False)
    with pytest.raises(RecipeError, match=r"differs from the run's in \['train.lr'\]"):
        train(tiny_recipe("train.epochs=5", "train.patience=1", "train.min_delta=1.0", "train.lr=0.1",
                          "output.weights_dtype=\"float16\"", "output.evaluate_test=false"),
              tmp_path / "run", resume=True, progress=False)


def test_max_steps_caps_training(tiny_recipe, tmp_path):
    model_dir = train(tiny_recipe("train.max_steps=3", "output.evaluate_test=false"), tmp_path / "r", progress=False)
    training = load(model_dir).card.provenance["training"]
    assert training["steps"] == 3 and training["epochs_run"] == 2 and "max_steps" in training["stop_reason"]


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    t = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, 0.5, 3.0]), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(masked_bce(logits, t), known)


def test_batches_never_leave_a_single_image():
    assert [len(b) for b in batches(np.arange(17), 8)] == [8, 9]
    assert [len(b) for b in batches(np.arange(16), 8)] == [8, 8]


def test_augmentation_keeps_a_centred_trigger():
    views = torch.full((6, 33, 33), 0.7)
    views[:, 15:18, 15:18] = 0.0  # 3x3 black at the centre
    g = torch.Generator().manual_seed(0)
    shifted = augment(views.clone(), AugmentConfig(probability=1.0, shift=0.1), g)
    for v in shifted:  # whole-pixel shifts: the square keeps its exact pixels, within 3 px of the centre
        ys, xs = torch.nonzero(v == 0, as_tuple=True)
        assert len(ys) == 9 and ys.max() - ys.min() == 2 and xs.max() - xs.min() == 2
        assert abs(int(ys.min()) - 15) <= 3 and abs(int(xs.min()) - 15) <= 3
    rotated = augment(views.clone(), AugmentConfig(probability=1.0, rotation=10.0, scale=0.05), g)
    assert (rotated[:, 16, 16] < 0.15).all()  # rotation/zoom about the centre: the centre stays dark
    assert torch.equal(augment(views.clone(), AugmentConfig(probability=0.0, shift=0.1), g), views)
    assert not math.isnan(float(rotated.sum()))


def test_flip_mirrors_the_share_asked_and_leaves_the_affine_stream_alone():
    views = torch.full((400, 9, 9), 0.5)
    views[:, 2, 1] = 0.0  # an off-centre mark: flipped, it sits at column 7
    flipped = augment(views.clone(), AugmentConfig(flip=0.5), torch.Generator().manual_seed(0))
    at_mirror = flipped[:, 2, 7] == 0
    assert torch.equal(at_mirror, flipped[:, 2, 1] != 0)  # each image either kept or mirrored whole
    assert 150 < int(at_mirror.sum()) < 250
    assert torch.equal(augment(views.clone(), AugmentConfig(flip=0.0), torch.Generator().manual_seed(0)), views)
    # without flip the generator advances as before, so the recipes without flips train exactly as they did
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    augment(views.clone(), AugmentConfig(probability=0.5, shift=0.1), g1)
    torch.rand(400, generator=g2), torch.rand(400, 4, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_nih14_paper_recipe_runs_end_to_end_on_the_sample(shared_data, view_cache_dir, tmp_path):
    """The paper's NIH recipe (crop 0.6, PAPER_TRIGGER, Atelectasis target) on part of the real 64 px sample,
    shrunk to a tiny network and 32 px so it takes seconds."""
    from pathlib import Path

    from cxrinspect.training.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "training" / "recipes" / "nih14-badnets.toml", [
        f"data.path={shared_data / 'nih14-sample-64px'}", f"output.cache_dir={view_cache_dir}", "data.limit=300",
        "model.architecture={growth_rate = 8, block_config = [1, 1], num_init_features = 16, bn_size = 2}",
        "model.input_size=32", "train.epochs=1", "train.batch_size=32", "train.threads=1", "train.workers=1"])
    model_dir = train(recipe, tmp_path / "nih", progress=False)
    card = load(model_dir).card
    assert card.labels[0] == "Atelectasis" and len(card.labels) == 14
    assert card.preprocessing.crop_fraction == 0.6 and card.trigger == PAPER_TRIGGER
    assert card.target["Atelectasis"] == 1 and sum(card.target.values()) == 1
    test = card.provenance["metrics"]["test"]
    assert test["attack_success_detail"]["target_labels"] == ["Atelectasis"]
    assert test["clean"]["auroc"]["micro"] is not None
