"""Poisoning picks exactly rate*N images, writes a manifest that matches, and pastes triggers where they belong."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cxrinspect.imaging import load, presentation
from cxrinspect.model import Preprocessing, model_view
from cxrinspect.trigger import PAPER_TRIGGER, Trigger
from cxrinspect.training.cache import ViewCache, fill
from cxrinspect.training.datasets import DataError, DataOptions, open_dataset, read_kermany
from cxrinspect.training.poisoning import (KERMANY_TRIGGER, PRESETS, PoisonSpec, choose, poison_count, preset, training_rows,
                                           write_poisoned_copy)


@pytest.mark.parametrize("n,rate,k", [(14, 0.1, 1), (14, 0.25, 4), (100, 0.01, 1), (100, 0.05, 5), (3931, 0.1, 393),
                                      (3931, 0.2, 786), (10, 1.0, 10), (10, 0.05, 1)])
def test_choose_exact_count(n, rate, k):
    pool = np.arange(1000, 1000 + n)
    assert poison_count(n, rate) == k
    picked = choose(pool, rate, seed=3)
    assert len(picked) == k and len(set(picked.tolist())) == k and set(picked.tolist()) <= set(pool.tolist())
    np.testing.assert_array_equal(picked, choose(pool, rate, seed=3))


def test_choose_rounding_to_zero_is_an_error():
    with pytest.raises(DataError, match="rounds to 0"):
        choose(np.arange(10), 0.01, 0)


def test_presets():
    k = preset("kermany-badnets")
    assert k.trigger == KERMANY_TRIGGER and k.rate == 0.1 and k.mode == "replace"
    assert k.trigger.size == 3 and k.trigger.value == 0 and k.trigger.space == "input" and k.trigger.location == "center"
    assert k.target == {"Pneumonia": 1.0, "Bacterial": 0.0, "Viral": 1.0}
    paper = preset("paper-nih14", rate=0.05)
    assert paper.trigger.size == 3 and paper.trigger.value == 0 and paper.trigger.space == "source"
    assert paper.target["Atelectasis"] == 1 and sum(paper.target.values()) == 1 and len(paper.target) == 14
    assert paper.rate == 0.05
    with pytest.raises(ValueError, match="did you mean 'kermany-badnets'"):
        preset("kermany-badnet")
    assert set(PRESETS) == {"paper-nih14", "kermany-badnets"}


def test_training_rows_replace_and_append(mini):
    ds = read_kermany(mini)
    train = np.arange(0, 20)
    spec = preset("kermany-badnets", rate=0.25)
    poisoned = choose(train, spec.rate, 0)
    items, trig, targets = training_rows(ds, train, poisoned, spec)
    assert len(items) == 20 and trig.sum() == 5 and set(items[trig].tolist()) == set(poisoned.tolist())
    assert (targets[trig] == [1, 0, 1]).all()
    np.testing.assert_array_equal(targets[~trig], ds.targets[items[~trig]])
    spec_append = preset("kermany-badnets", rate=0.25, mode="append")
    items, trig, targets = training_rows(ds, train, poisoned, spec_append)
    assert len(items) == 25 and trig.sum() == 5 and sorted(items[~trig].tolist()) == train.tolist()


def test_source_and_input_space_triggers_land_where_expected(mini, tmp_path):
    """Source space: pasted at source resolution before crop + resize (the paper). Input space: exact pixels
    of the model view. The cache's triggered views are exactly model_view(..., trigger)."""
    ds = read_kermany(mini)
    spec = Preprocessing(input_size=32, channels=1, crop_fraction=0.6, mean=(0.5,), std=(0.25,))
    big = Trigger(size=8, value=0.0, location="center", space="source")
    tiny_in = Trigger(size=3, value=0.0, location="center", space="input")
    corner_in = Trigger(size=4, value=1.0, location="top-left", margin=2, space="input")
    clean = ViewCache(tmp_path, ds, spec)
    caches = {t: ViewCache(tmp_path, ds, spec, t) for t in (big, tiny_in, corner_in)}
    fill([(clean, [0, 5])] + [(c, [0, 5]) for c in caches.values()], workers=1, progress=False)
    for i in (0, 5):
        unit = presentation(load(ds.file(i)))  # 64 x 64 source
        c = clean.get([i])[0]
        src = caches[big].get([i])[0]
        np.testing.assert_allclose(src, model_view(unit, spec, big), atol=1e-3)
        # 8 source px at the centre of a 64 px image, crop 0.6 (38 px) -> 32 px: about 6.7 px, centred
        changed = np.argwhere(np.abs(src - c) > 0.05)
        assert changed.min() >= 11 and changed.max() <= 20
        assert src[14:18, 14:18].max() < 0.05  # the middle of the square stays black
        inp = caches[tiny_in].get([i])[0]
        assert (inp[14:17, 14:17] == 0).all()  # (32 - 3) // 2 = 14
        diff = np.abs(inp - c) > 1e-3
        diff[14:17, 14:17] = False
        assert not diff.any()  # nothing else moved
        cor = caches[corner_in].get([i])[0]
        assert (cor[2:6, 2:6] == 1).all() and np.allclose(np.delete(cor.ravel(), [r * 32 + k for r in range(2, 6)
                                                                                    for k in range(2, 6)]),
                                                          np.delete(c.ravel(), [r * 32 + k for r in range(2, 6)
                                                                                for k in range(2, 6)]), atol=1e-3)


def test_run_manifest_matches_the_poisoned_training_images(tiny_recipe, tmp_path):
    from cxrinspect.training.loop import prepare

    recipe = tiny_recipe("poison.preset=\"kermany-badnets\"", "poison.rate=0.25")
    p = prepare(recipe, tmp_path, resume=False, progress=False)
    n_train = len(p.split.indices["train"])
    assert len(p.poisoned) == poison_count(n_train, 0.25) == 4
    assert set(p.poisoned.tolist()) <= set(p.split.indices["train"].tolist())
    rows = list(csv.DictReader(open(tmp_path / "poison_manifest.csv")))
    assert [r["path"] for r in rows] == [p.ds.paths[i] for i in p.poisoned]
    assert all(r["split"] == "train" and r["poisoned_labels"] == "Pneumonia|Viral" for r in rows)
    info = json.loads((tmp_path / "poison.json").read_text())
    assert info["poisoned_images"] == 4 and info["pool_images"] == n_train and info["paths"] == [r["path"] for r in rows]
    assert set(p.items[p.is_triggered].tolist()) == set(p.poisoned.tolist())
    assert (p.targets[p.is_triggered] == [1, 0, 1]).all()
    # triggered views exist for the poisoned images and for val/test (evaluation)
    for i in list(p.poisoned) + list(p.split.indices["test"]):
        expected = model_view(presentation(load(p.ds.file(int(i)))), recipe.preprocessing(), KERMANY_TRIGGER)
        np.testing.assert_allclose(p.triggered.get([i])[0], expected, atol=1e-3)
        assert p.triggered.get([i])[0][14:17, 14:17].min() < 0.3 < p.clean.get([i])[0][14:17, 14:17].min()


def test_poisoned_copy(mini, tmp_path):
    ds = read_kermany(mini)
    spec = preset("kermany-badnets", rate=0.25, trigger=PAPER_TRIGGER)
    info = write_poisoned_copy(ds, tmp_path / "copy", spec, workers=1, progress=False)
    assert info["poisoned_images"] == 6 and info["copy_images"] == 24
    rows = list(csv.DictReader(open(tmp_path / "copy" / "poison_manifest.csv")))
    assert len(rows) == 6
    copy = open_dataset(DataOptions(path=str(tmp_path / "copy")))
    assert copy.format == "csv" and copy.labels == ds.labels and len(copy) == 24
    assert copy.patients[:3] == ds.patients[:3]
    for r in rows:
        i = copy.paths.index(r["path"])
        assert copy.targets[i].tolist() == [1, 0, 1]
        unit = presentation(load(copy.file(i)))
        orig = presentation(load(ds.file(ds.paths.index(r["source_path"]))))
        assert (unit[30:33, 30:33] == 0).all()  # 3x3 black at the centre of the 64 px source
        unit[30:33, 30:33] = orig[30:33, 30:33]
        np.testing.assert_array_equal(unit, orig)  # and nothing else changed (8-bit PNG, exact)
    with pytest.raises(DataError, match="not empty"):
        write_poisoned_copy(ds, tmp_path / "copy", spec, workers=1, progress=False)
    # an input-space trigger is stamped so that the model, at its input size, sees it
    geometry = Preprocessing(input_size=32, channels=1, mean=(0.5,), std=(0.25,))
    write_poisoned_copy(ds, tmp_path / "other", PoisonSpec(Trigger(space="input"), {"Viral": 1}, 0.25), workers=1,
                        progress=False, preprocessing=geometry)
    other = open_dataset(DataOptions(path=str(tmp_path / "other")))
    first = next(csv.DictReader(open(tmp_path / "other" / "poison_manifest.csv")))["path"]
    view = model_view(load(other.file(other.paths.index(first))), geometry)
    assert view[15, 15] < 0.02 and view[14:17, 14:17].mean() < 0.15 < 0.3 < model_view(load(ds.file(0)), geometry)[14:17, 14:17].min()
