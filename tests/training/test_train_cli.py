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


def test_sweep_trains_each_rate_once_and_tabulates(view_cache_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["--quiet", "sweep", "--recipe", str(TINY), "--rates", "0.25,0.5", "--out", str(out),
            "--set", "poison.preset=\"kermany-badnets\"", "--set", "train.epochs=1",
            "--set", f"output.cache_dir={view_cache_dir}"]
    assert main(args) == 0
    table = json.loads((out / "sweep.json").read_text())
    assert [r["rate"] for r in table["rates"]] == [0.25, 0.5]
    for r in table["rates"]:
        info = json.loads((out / f"rate-{r['rate']:g}" / "model" / "poison.json").read_text())
        assert info["rate"] == r["rate"] and 0.0 <= r["attack_success_0.9"] <= 1.0
    md = (out / "sweep.md").read_text()
    assert "| 25% |" in md and "| 50% |" in md and "paper" in md and md in capsys.readouterr().out
    stamp = (out / "rate-0.25" / "model" / "weights.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # a rerun keeps finished rates
    assert (out / "rate-0.25" / "model" / "weights.safetensors").stat().st_mtime_ns == stamp
    assert main(["sweep", "--recipe", str(TINY), "--rates", "0.1", "--out", str(tmp_path / "s2")]) == 2
    assert "[poison]" in capsys.readouterr().err  # an unpoisoned recipe has no rate to sweep
