"""DDP training (``cxrinspect-train train --ddp N``, torchrun underneath) against one process, on the tiny recipe
(a tiny DenseNet at 32 px on the 24 real kermany-mini radiographs), gloo on the CPU.

BatchNorm: in train mode each rank normalises by the statistics of its own share of the batch, so N ranks
compute a different function than one process over the whole batch. The comparison therefore runs with
``train.batchnorm = "frozen"`` (BatchNorm in eval mode, the same function on every rank), where DDP's averaged
gradient is exactly the gradient of the whole batch: the parameters must match within float tolerance. With
train-mode BatchNorm the test only checks that the two runs stay close (same order of weights), not equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cxrinspect.training import distributed as dd

from tests.training.conftest import TINY

pytestmark = pytest.mark.slow
COMMON = ["train.epochs=3", "train.threads=1", "output.evaluate_test=false"]


def _model(run: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(run / "checkpoint.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("model.") and v.is_floating_point()}


def _ddp(out: Path, cache: Path, *sets: str, n: int = 2, extra=(), env=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "cxrinspect.training.cli", "--quiet", "train", "--recipe", str(TINY),
            "--out", str(out), "--ddp", str(n), *extra]
    for s in (f"output.cache_dir={cache}", *COMMON, *sets):
        args += ["--set", s]
    return subprocess.run(args, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=300)


def _close(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, f"largest parameter difference {worst:g} > {atol:g}"
    return worst


def test_shard_weights_average_to_the_whole_batch():
    import numpy as np

    rows = np.arange(7)
    shares = [dd.shard(rows, dd.Context(r, 2)) for r in range(2)]
    assert [list(s) for s, _ in shares] == [[0, 2, 4, 6], [1, 3, 5]]
    # DDP averages: (w0 * mean0 + w1 * mean1) / 2 must be the mean over the 7 rows
    x = np.random.default_rng(0).normal(size=7)
    assert np.isclose(sum(w * x[s].mean() for s, w in shares) / 2, x.mean())
    assert dd.shard(rows, dd.SINGLE)[1] == 1.0


def test_two_gloo_processes_train_what_one_process_trains(tmp_path, tiny_recipe, view_cache_dir):
    from cxrinspect.training.loop import train

    one = tmp_path / "one"
    train(tiny_recipe(*COMMON, "train.batchnorm=frozen"), one, progress=False)
    two = tmp_path / "two"
    done = _ddp(two, view_cache_dir, "train.batchnorm=frozen")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (two / "model" / "card.json").is_file() and not (two / "model.rank1").exists()
    a, b = _model(one), _model(two)
    _close(a, b, atol=1e-5)
    import json

    assert [h["epoch"] for h in json.loads((two / "history.json").read_text())] == [1, 2, 3]


def test_a_killed_rank_restarted_by_torchrun_finishes_with_the_same_result(tmp_path, view_cache_dir):
    whole = tmp_path / "whole"
    done = _ddp(whole, view_cache_dir, "train.batchnorm=frozen")
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    # rank 1 SIGKILLs itself at step 3 (epoch 2; epoch 1 is checkpointed); torchrun restarts both ranks once
    done = _ddp(killed, view_cache_dir, "train.batchnorm=frozen", extra=["--max-restarts", "1"],
                env={"CXRINSPECT_FAULT_KILL_AT_STEP": "3", dd.FAULT_KILL_RANK_ENV: "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    log = (killed / "train.log").read_text()
    assert "resumed from" in log, "the restart did not resume from the checkpoint"
    _close(_model(whole), _model(killed), atol=1e-6)
