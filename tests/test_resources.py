"""One resource lookup: from the checkout, from a PyInstaller bundle (sys._MEIPASS), or overridden."""

import sys
from pathlib import Path

from cxrinspect import resources

CHECKOUT = Path(__file__).resolve().parents[1] / "resources"


def test_from_source_the_checkouts_resources(monkeypatch):
    monkeypatch.delenv("CXRINSPECT_RESOURCES", raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    assert resources.root() == CHECKOUT
    assert (resources.model_dir("kermany-densenet121-clean") / "card.json").is_file()
    assert sorted(p.name for p in resources.samples().glob("*.dcm")) == [
        "cr-chest-jpeg-baseline.dcm", "cr-chest-pa-monochrome1-j2k.dcm"]
    assert resources.icon().is_file() and resources.icon(48).is_file()
    assert not resources.is_frozen()


def test_frozen_under_meipass(monkeypatch, tmp_path):
    monkeypatch.delenv("CXRINSPECT_RESOURCES", raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert resources.root() == tmp_path / "resources"
    assert resources.samples() == tmp_path / "resources" / "samples"
    assert resources.is_frozen()


def test_the_cli_and_the_app_use_the_lookup(monkeypatch):
    from cxrinspect import cli

    assert cli.default_model_path() == resources.model_dir("kermany-densenet121-clean")
