"""Fixtures for cxrinspect.training: the committed kermany-mini dataset, the tiny recipe, a shared cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "kermany-mini"
RECIPES = ROOT / "training" / "recipes"
TINY = RECIPES / "tiny-test.toml"


@pytest.fixture(scope="session", autouse=True)
def _private_view_cache(tmp_path_factory):
    """No test writes to the user's ~/.cache: the default cache (and subprocesses') points at a temp dir."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CXRINSPECT_CACHE", str(tmp_path_factory.mktemp("default-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def mini() -> Path:
    """24 real Kermany radiographs (64 px grey PNG, 20 patients) in the Kermany layout."""
    return MINI


@pytest.fixture(scope="session")
def view_cache_dir(tmp_path_factory) -> Path:
    """One view cache for the session, so the 24 images are decoded once."""
    return tmp_path_factory.mktemp("view-cache")


@pytest.fixture
def mini_copy(tmp_path) -> Path:
    """A writable copy of kermany-mini (for tests that break it)."""
    dst = tmp_path / "kermany-mini"
    shutil.copytree(MINI, dst)
    return dst


@pytest.fixture
def tiny_recipe(view_cache_dir):
    """The tiny test recipe with the session's cache: ``tiny_recipe("train.epochs=2", ...)``."""
    from cxrinspect.training.recipe import load_recipe

    def make(*overrides, path=TINY):
        return load_recipe(path, [f"output.cache_dir={view_cache_dir}", *overrides])

    return make


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, view_cache_dir):
    """A poisoned tiny model trained once for the session (evaluation and export tests use it)."""
    from cxrinspect.training.loop import train
    from cxrinspect.training.recipe import load_recipe

    recipe = load_recipe(TINY, [f"output.cache_dir={view_cache_dir}", "poison.preset=kermany-badnets",
                                "poison.rate=0.25", "train.epochs=2"])
    run = tmp_path_factory.mktemp("trained") / "run"
    model_dir = train(recipe, run, progress=False)
    return run, model_dir
