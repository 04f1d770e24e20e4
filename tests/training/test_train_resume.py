"""kill -9 in the middle of an epoch, then --resume: the run continues from the last finished epoch and ends
exactly where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from cxrinspect.training.checkpoint import read_info
from cxrinspect.training.loop import FAULT_KILL_ENV, train

TINY = Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny-test.toml"


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_recipe, view_cache_dir, tmp_path):
    overrides = ["train.epochs=3", "output.evaluate_test=false"]
    reference = train(tiny_recipe(*overrides), tmp_path / "reference", progress=False)

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cxrinspect.training.cli", "--quiet", "train", "--recipe", str(TINY), "--out", str(run),
           "--set", f"output.cache_dir={view_cache_dir}"] + [a for o in overrides for a in ("--set", o)]
    env = dict(os.environ, **{FAULT_KILL_ENV: "3"})  # 2 steps per epoch: step 3 is in the middle of epoch 2
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    info = read_info(run / "checkpoint.safetensors")["info"]
    assert info["epoch"] == 1 and info["step"] == 2 and not info["finished"]  # only epoch 2 was lost
    assert not (run / "model").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left behind

    # the best epoch so far can be exported from the killed run, which stays resumable
    from cxrinspect.model import read_card
    from cxrinspect.training.cli import main as train_cli

    assert train_cli(["--quiet", "export", "--run", str(run)]) == 0
    card = read_card(run / "model")
    training = card.provenance["training"]
    assert training["epochs_run"] == 1 and "epoch 1 of 3 done" in training["stop_reason"]
    assert read_info(run / "checkpoint.safetensors")["info"]["step"] == 2  # untouched

    resumed = train(tiny_recipe(*overrides), run, resume=True, progress=False)
    a, b = load_file(str(reference / "weights.safetensors")), load_file(str(resumed / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((reference.parent / "history.json").read_text())
    hb = json.loads((run / "history.json").read_text())
    drop = ("images_per_second", "seconds")
    assert [{k: v for k, v in e.items() if k not in drop} for e in ha] == \
        [{k: v for k, v in e.items() if k not in drop} for e in hb]


def test_checkpoint_steps_resumes_inside_an_epoch_bit_exactly(tiny_recipe, view_cache_dir, tmp_path):
    overrides = ["train.epochs=2", "train.checkpoint_steps=1", "output.evaluate_test=false"]
    reference = train(tiny_recipe(*overrides), tmp_path / "reference", progress=False)

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cxrinspect.training.cli", "--quiet", "train", "--recipe", str(TINY), "--out", str(run),
           "--set", f"output.cache_dir={view_cache_dir}"] + [a for o in overrides for a in ("--set", o)]
    env = dict(os.environ, **{FAULT_KILL_ENV: "3"})  # 2 steps per epoch: killed after the first step of epoch 2
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    info = read_info(run / "checkpoint.safetensors")["info"]
    assert info["epoch"] == 1 and info["step"] == 3 and info["partial"]["batches"] == 1  # nothing lost

    resumed = train(tiny_recipe(*overrides), run, resume=True, progress=False)
    a, b = load_file(str(reference / "weights.safetensors")), load_file(str(resumed / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("images_per_second", "seconds")
    ha = json.loads((reference.parent / "history.json").read_text())
    hb = json.loads((run / "history.json").read_text())
    assert [{k: v for k, v in e.items() if k not in drop} for e in ha] == \
        [{k: v for k, v in e.items() if k not in drop} for e in hb]
