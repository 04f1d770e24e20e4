"""Imaging fixtures: the committed DICOM/JPEG fixtures and a way to edit a DICOM header in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def dicom_dir(fixtures_dir) -> Path:
    return fixtures_dir / "dicom"


@pytest.fixture(scope="session")
def images_dir(fixtures_dir) -> Path:
    return fixtures_dir / "images"


@pytest.fixture
def edited_dicom(dicom_dir, tmp_path) -> Callable[..., Path]:
    """edited_dicom(fixture_name, edit, name=None): the fixture with ``edit(dataset)`` applied, saved in tmp_path."""
    import pydicom

    def make(fixture: str, edit: Callable | None = None, name: str | None = None, **save_kwargs) -> Path:
        ds = pydicom.dcmread(dicom_dir / fixture)
        if edit is not None:
            edit(ds)
        out = tmp_path / (name or f"edited_{fixture}")
        ds.save_as(out, **save_kwargs)
        return out

    return make


@pytest.fixture(scope="session")
def kermany_grey(images_dir) -> np.ndarray:
    """A real Kermany chest X-ray as 8-bit grey (its RGB channels are equal)."""
    from PIL import Image

    with Image.open(images_dir / "IM-0001-0001.jpeg") as img:
        rgb = np.asarray(img.convert("RGB"))
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    return np.ascontiguousarray(rgb[..., 0])


def _dicom_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear VOI function to [0, 1], written out independently of the code under test."""
    x = np.asarray(x, dtype=np.float64)
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    y = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, y))


@pytest.fixture(scope="session")
def dicom_window() -> Callable[[np.ndarray, float, float], np.ndarray]:
    """The reference linear VOI function (float64), to compare the display code against."""
    return _dicom_window
