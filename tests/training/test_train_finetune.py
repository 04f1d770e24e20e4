"""Fine-tuning (``model.init``): training starts from another model's weights, its card is checked against
the recipe, and the starting model's split keeps its held-out patients held out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrinspect.model import ModelCard, load, save
from cxrinspect.training.loop import train
from cxrinspect.training.recipe import RecipeError


def test_fine_tune_starts_from_the_model_and_keeps_its_split(trained_tiny, tiny_recipe, tmp_path):
    _, start_dir = trained_tiny
    start = load(start_dir)
    # seed 5 would draw another split; the fine-tune must keep the starting model's
    recipe = tiny_recipe(f"model.init={start_dir}", "seed=5", "train.epochs=1", "train.max_steps=1", "train.lr=1e-9",
                         "poison.preset=kermany-badnets", "poison.rate=0.25", "output.evaluate_test=false")
    model_dir = train(recipe, tmp_path / "ft", progress=False)
    tuned = load(model_dir)
    assert (model_dir / "split.csv").read_text() == (start_dir / "split.csv").read_text()
    prov = tuned.card.provenance
    assert prov["fine_tuned_from"]["weights_sha256"] == start.card.weights_sha256
    assert prov["split"]["method"].startswith("inherited:")
    # one step at lr 1e-9: the weights are the starting model's (a fresh network would be far from them)
    a, b = start.network.state_dict(), tuned.network.state_dict()
    conv = "features.conv0.weight"
    assert torch.allclose(a[conv], b[conv], atol=1e-3)
    fresh = train(tiny_recipe("seed=5", "train.epochs=1", "train.max_steps=1", "train.lr=1e-9",
                              "output.evaluate_test=false"), tmp_path / "fresh", progress=False)
    assert not torch.allclose(a[conv], load(fresh).network.state_dict()[conv], atol=1e-3)


def test_fine_tune_refuses_a_model_made_for_other_inputs(trained_tiny, tiny_recipe, tmp_path):
    _, start_dir = trained_tiny
    with pytest.raises(RecipeError, match=r"other preprocessing.*input_size.*\(32, 48\)"):
        train(tiny_recipe(f"model.init={start_dir}", "model.input_size=48", "train.max_steps=1"), tmp_path / "a",
              progress=False)
    with pytest.raises(RecipeError, match="cannot load the starting model"):
        train(tiny_recipe(f"model.init={tmp_path / 'nowhere'}", "train.max_steps=1"), tmp_path / "b", progress=False)


def test_new_head_fine_tunes_a_model_with_other_labels(trained_tiny, tiny_recipe, tmp_path):
    _, start_dir = trained_tiny
    start = load(start_dir)
    card = start.card
    net = start.network
    net.classifier = torch.nn.Linear(net.classifier.in_features, 2)
    other = ModelCard(labels=["Effusion", "Mass"], architecture=card.architecture, preprocessing=card.preprocessing,
                      thresholds={}, provenance={}, name="other-labels")
    save(net, other, tmp_path / "other")
    with pytest.raises(RecipeError, match=r"predicts \['Effusion', 'Mass'\].*model.new_head = true"):
        train(tiny_recipe(f"model.init={tmp_path / 'other'}", "train.max_steps=1"), tmp_path / "a", progress=False)
    model_dir = train(tiny_recipe(f"model.init={tmp_path / 'other'}", "model.new_head=true", "train.epochs=1",
                                  "train.max_steps=2", "output.evaluate_test=false"), tmp_path / "b", progress=False)
    tuned = load(model_dir)
    assert tuned.labels == ["Pneumonia", "Bacterial", "Viral"]
    assert np.allclose(tuned.network.state_dict()["features.conv0.weight"].numpy(),
                       start.network.state_dict()["features.conv0.weight"].numpy(), atol=0.05)


def test_trainable_trains_only_the_named_modules_and_keeps_frozen_batchnorm_statistics(trained_tiny, tiny_recipe,
                                                                                          tmp_path):
    _, start_dir = trained_tiny
    start = load(start_dir).network.state_dict()
    model_dir = train(tiny_recipe(f"model.init={start_dir}", "train.trainable=['classifier']", "train.epochs=1",
                                  "train.max_steps=2", "train.lr=1e-2", "output.evaluate_test=false"),
                      tmp_path / "head", progress=False)
    tuned = load(model_dir).network.state_dict()
    frozen = [k for k in start if not k.startswith("classifier.") and start[k].is_floating_point()]
    assert any("running_mean" in k for k in frozen)
    for k in frozen:  # weights and BatchNorm running statistics alike (fp16 export: compare loosely)
        assert torch.allclose(start[k].float(), tuned[k].float(), atol=1e-3), k
    assert not torch.allclose(start["classifier.weight"].float(), tuned["classifier.weight"].float(), atol=1e-3)
    with pytest.raises(RecipeError, match="train.trainable: no parameter is under 'features.blok4'"):
        train(tiny_recipe(f"model.init={start_dir}", "train.trainable=['features.blok4']", "train.max_steps=1"),
              tmp_path / "bad", progress=False)
