"""The decode-once cache stores exactly what THE preprocessing path makes."""

from __future__ import annotations

import numpy as np

from cxrinspect.imaging import load
from cxrinspect.model import Preprocessing, model_view
from cxrinspect.training.cache import DONE, ViewCache, fill
from cxrinspect.training.datasets import read_kermany


def test_cache_holds_model_views_and_decodes_once(mini, tmp_path):
    ds = read_kermany(mini)
    spec = Preprocessing(input_size=32, channels=1, crop_fraction=0.8, mean=(0.5,), std=(0.25,))
    cache = ViewCache(tmp_path, ds, spec)
    assert fill([(cache, range(len(ds)))], workers=1, progress=False) == 24
    assert (cache.state == DONE).all()
    for i in (0, 9, 23):
        expected = model_view(load(ds.file(i)), spec)
        np.testing.assert_allclose(cache.get([i])[0], expected, atol=1e-3)  # float16 storage
    again = ViewCache(tmp_path, ds, spec)  # same key: the views are already there
    assert again.key == cache.key and fill([(again, range(len(ds)))], workers=1, progress=False) == 0
    np.testing.assert_array_equal(again.get([3, 1, 2]), cache.get([3, 1, 2]))  # any order
    other = ViewCache(tmp_path, ds, Preprocessing(input_size=32, channels=1, crop_fraction=0.6, mean=(0.5,), std=(0.25,)))
    assert other.key != cache.key and len(other.missing(range(len(ds)))) == 24


def test_parallel_fill_matches_serial(mini, tmp_path):
    ds = read_kermany(mini)
    spec = Preprocessing(input_size=32, channels=1, mean=(0.5,), std=(0.25,))
    serial, parallel = ViewCache(tmp_path / "a", ds, spec), ViewCache(tmp_path / "b", ds, spec)
    fill([(serial, range(len(ds)))], workers=1, progress=False)
    fill([(parallel, range(len(ds)))], workers=2, progress=False)
    np.testing.assert_array_equal(serial.get(range(len(ds))), parallel.get(range(len(ds))))
