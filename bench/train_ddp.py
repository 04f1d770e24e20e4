"""Training throughput, one process vs DDP with 1 and 2 processes (gloo on the CPU), same recipe, same run.

    .venv/bin/python bench/train_ddp.py [--recipe training/recipes/tiny-test.toml] [--epochs 3] [--set K=V ...]
        [--out bench/results/train_ddp.txt]

Each configuration trains the recipe into its own folder; the figure is the mean training images/s of its
epochs after the first (history.json: optimiser steps only, validation excluded), and the wall time of the
whole command (start-up, decoding, validation, export included). Threads: each DDP process gets
cores / N torch threads, the single process all of them. On a shared machine compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(recipe: str, out: Path, sets: list[str], ddp: int | None) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "cxrinspect.training.cli", "--quiet", "train", "--recipe", recipe, "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    if ddp is not None:
        cmd += ["--ddp", str(ddp)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    hist = json.loads((out / "history.json").read_text())
    rates = [h["images_per_second"] for h in hist[1:]] or [hist[0]["images_per_second"]]
    return sum(rates) / len(rates), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default=str(ROOT / "training" / "recipes" / "tiny-test.toml"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="train-ddp-"))
    cores = os.cpu_count() or 1
    base = [f"train.epochs={a.epochs}", "train.patience=0", "output.evaluate_test=false",
            f"output.cache_dir={work / 'cache'}", *a.set]
    lines = [f"train_ddp: recipe {Path(a.recipe).name} {a.set}, {a.epochs} epochs, {cores} cores, load average "
             f"{os.getloadavg()[0]:.2f} at start"]
    run(a.recipe, work / "warm", base + ["train.epochs=1"], None)  # fill the view cache once
    one, wall1 = run(a.recipe, work / "one", base + [f"train.threads={cores}"], None)
    lines.append(f"1 process, {cores} threads: {one:.1f} images/s (training), {wall1:.1f} s wall")
    for n in (1, 2):
        rate, wall = run(a.recipe, work / f"ddp{n}", base + [f"train.threads={max(1, cores // n)}"], n)
        lines.append(f"DDP {n} process(es), {max(1, cores // n)} thread(s) each: {rate:.1f} images/s (training), "
                     f"{wall:.1f} s wall, x{rate / one:.2f} of 1 process")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
