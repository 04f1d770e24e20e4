"""The cxrinspect-train command: bad input gives a one-line error and exit status 2, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from cxrinspect.training.cli import main

TINY = Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny-test.toml"


def test_train_recipe_typo_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace("batch_size = 8", "batchsize = 8"))
    assert main(["train", "--recipe", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.batchsize'; did you mean 'train.batch_size'?" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_train_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--recipe", str(TINY), "--set", f"data.path={tmp_path / 'nowhere'}",
                 "--out", str(tmp_path / "run")]) == 2
    assert "data path not found" in capsys.readouterr().err


def test_poison_command(mini, tmp_path, capsys):
    out = tmp_path / "copy"
    assert main(["--quiet", "poison", "--data", str(mini), "--out", str(out), "--preset", "kermany-badnets",
                 "--rate", "0.25", "--workers", "1"]) == 0
    info = json.loads((out / "poison.json").read_text())
    assert info["poisoned_images"] == 6 and len(info["paths"]) == 6
    assert "6 poisoned" in capsys.readouterr().out
    assert main(["poison", "--data", str(mini), "--out", str(tmp_path / "c2"), "--preset", "kermany-badnets",
                 "--target", "Virale=1"]) == 2
    assert "did you mean 'Viral'" in capsys.readouterr().err
