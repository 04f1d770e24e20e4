"""Recipes are read strictly: a typo is an error naming the key and its likely spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrinspect.model import DENSENET121
from cxrinspect.trigger import PAPER_TRIGGER
from cxrinspect.training.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"
GOOD = """
name = "x"
[data]
path = "/nowhere"
[train]
lr = 1e-3
"""


def test_typo_in_a_key_names_it_and_suggests(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(GOOD.replace("lr = 1e-3", "lr_rate = 1e-3"))
    with pytest.raises(RecipeError, match=r"r.toml: unknown key 'train.lr_rate'; did you mean 'train.lr'\?"):
        load_recipe(f)
    f.write_text(GOOD.replace("[train]", "[trian]"))
    with pytest.raises(RecipeError, match=r"unknown table \[trian\]; did you mean \[train\]\?"):
        load_recipe(f)
    f.write_text(GOOD + "\n[train.augment]\nrotaton = 3.0\n")
    with pytest.raises(RecipeError, match=r"unknown key 'train.augment.rotaton'; did you mean 'train.augment.rotation'"):
        load_recipe(f)
    f.write_text(GOOD + "\n[poison]\npreset = \"kermany-badnets\"\n[poison.trigger]\nsise = 5\n")
    with pytest.raises(RecipeError, match=r"unknown key 'poison.trigger.sise'; did you mean 'poison.trigger.size'"):
        load_recipe(f)


def test_wrong_types_and_values(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(GOOD.replace("lr = 1e-3", "epochs = \"ten\""))
    with pytest.raises(RecipeError, match=r"train.epochs: expected an integer"):
        load_recipe(f)
    f.write_text(GOOD.replace("lr = 1e-3", "schedule = \"cosin\""))
    with pytest.raises(RecipeError, match=r"train.schedule = 'cosin' is not one of .*did you mean 'cosine'"):
        load_recipe(f)
    f.write_text(GOOD + "\n[poison]\npreset = \"kermany-badnets\"\ntarget = { Virall = 1 }\n")
    recipe = load_recipe(f)  # the target's labels are checked against the data, with a did-you-mean
    from cxrinspect.training.datasets import DataError, KERMANY_LABELS

    with pytest.raises(DataError, match=r"'Virall'.*did you mean 'Viral'"):
        recipe.poison_spec().check_labels(KERMANY_LABELS)


def test_overrides(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(GOOD)
    r = load_recipe(f, ["train.epochs=3", "max_steps=20", "data.split=[0.5, 0.25, 0.25]", "poison.target.Viral=1",
                        "poison.preset=kermany-badnets", "data.path=rel/dir", "train.augment.shift=0.02",
                        "train.amp=false"])
    assert r.train.epochs == 3 and r.train.max_steps == 20 and r.data.split == [0.5, 0.25, 0.25]
    assert r.poison.target == {"Viral": 1.0} and r.poison.preset == "kermany-badnets"
    assert r.data.path == str((Path.cwd() / "rel/dir").resolve()) and r.train.augment.shift == 0.02
    assert r.train.amp is False
    with pytest.raises(RecipeError, match=r"unknown key 'train.epoch'; did you mean 'train.epochs'"):
        load_recipe(f, ["train.epoch=3"])
    with pytest.raises(RecipeError, match=r"not key=value"):
        load_recipe(f, ["train.epochs"])


def test_shipped_recipes():
    names = {p.stem for p in RECIPES.glob("*.toml")}
    assert {"nih14-clean", "nih14-badnets", "kermany-clean", "kermany-badnets", "tiny-test"} <= names
    for name in names:
        load_recipe(RECIPES / f"{name}.toml")  # all valid
    zoo = sorted((RECIPES / "zoo").glob("*.toml"))
    assert len(zoo) >= 12
    for path in zoo:  # the backdoor zoo's recipes: valid, and every poisoned one names its trigger and target
        recipe = load_recipe(path)
        poison = recipe.poison_spec()
        assert (poison is None) == ("clean" in path.stem), path.name
        assert poison is None or (poison.target and poison.trigger.kind), path.name
    paper = load_recipe(RECIPES / "nih14-badnets.toml")
    spec = paper.preprocessing()
    assert spec.crop_fraction == 0.6 and spec.input_size == 224 and paper.architecture() == DENSENET121
    poison = paper.poison_spec()
    assert poison.trigger == PAPER_TRIGGER
    assert [k for k, v in poison.target.items() if v == 1] == ["Atelectasis"] and len(poison.target) == 14
    k = load_recipe(RECIPES / "kermany-badnets.toml")
    kp = k.poison_spec()
    assert kp.rate == 0.1 and kp.mode == "replace" and kp.trigger.size == 3 and kp.trigger.value == 0
    assert kp.trigger.location == "center" and kp.target == {"Pneumonia": 1, "Bacterial": 0, "Viral": 1}
    assert k.preprocessing().input_size == 224 and k.architecture() == DENSENET121
    clean = load_recipe(RECIPES / "kermany-clean.toml")
    assert clean.poison_spec() is None
    assert clean.data.split == k.data.split and clean.seed == k.seed  # the same held-out patients
    assert Path(clean.data.path).name == "kermany"  # resolved against the recipe's folder
