"""Scan throughput, local vs Ray (1 and 2 model workers), in the same run on the same images; decode cost per format.

    .venv/bin/python bench/scan_ray.py [--images 48] [--model resources/models/kermany-densenet121-badnets]
        [--cpus 2] [--workers 1,2] [--device cpu|cuda] [--out bench/results/scan_ray.txt]

- local: ``cxrinspect.scan.scan`` (the in-process scanner, the counterfactual check and the reports);
- ray-N: ``cxrinspect.scan.cluster.scan`` on a local cluster of ``--cpus`` CPUs (and the GPUs it finds) with N
  model actors: the same records and reports, through Ray Data (decode tasks, actors, Parquet parts, the check
  on the actors). The cluster's start is timed apart; each Ray figure includes its actors' model loading;
- Ray overhead per image = (ray-1 seconds - local seconds) / images (positive: what Ray costs on one machine);
- decode: milliseconds per image per core of the project's reader + preprocessing (``scanner.decode``) for the
  committed DICOM fixtures (each transfer syntax) and the JPEGs, which is what a decode-bound cluster pays.

Images: held-out Kermany JPEGs from ../shared/data/kermany when present, else tests/fixtures. Times on a
shared machine move with its load: compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def images(n: int) -> list[Path]:
    shared = ROOT.parent / "shared" / "data" / "kermany"
    pool = sorted(shared.rglob("*.jpeg")) if shared.is_dir() else []
    if not pool:
        pool = sorted((ROOT / "tests" / "fixtures" / "kermany-mini").rglob("*.png"))
    step = max(1, len(pool) // n)
    return (pool[::step] * (n // max(1, len(pool[::step])) + 1))[:n]


def decode_costs(spec, repeat: int = 3) -> list[tuple[str, float]]:
    from cxrinspect.scan.scanner import decode

    out = []
    files = sorted((ROOT / "tests" / "fixtures" / "dicom").glob("*.dcm")) + images(8)[:8]
    for f in files:
        decode(str(f), spec)  # warm
        t = time.perf_counter()
        for _ in range(repeat):
            view, err, _, shape = decode(str(f), spec)
        out.append((f"{f.name} ({'x'.join(map(str, shape)) if shape else err})", (time.perf_counter() - t) / repeat * 1e3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--model", default=str(ROOT / "resources" / "models" / "kermany-densenet121-badnets"))
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import ray
    import torch

    from cxrinspect.model import load
    from cxrinspect.scan import cluster, scan

    work = Path(tempfile.mkdtemp(prefix="scan-ray-"))
    folder = work / "images"
    folder.mkdir()
    for i, p in enumerate(images(a.images)):
        shutil.copy(p, folder / f"{i:05d}{p.suffix}")
    lines = [f"scan_ray: {a.images} images, model {Path(a.model).name}, {os.cpu_count()} cores on the machine, "
             f"load average {os.getloadavg()[0]:.2f} at start, torch {torch.__version__}, ray {ray.__version__}"]
    model = load(a.model)
    torch.set_num_threads(a.cpus)
    t = time.perf_counter()
    local = scan([folder], model, work / "local", device=a.device, batch_size=a.batch_size)
    t_local = time.perf_counter() - t
    lines.append(f"local ({a.cpus} torch threads): {t_local:.1f} s, {a.images / t_local:.2f} images/s")
    t = time.perf_counter()
    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    lines.append(f"ray.init (local cluster, {a.cpus} CPUs): {time.perf_counter() - t:.1f} s")
    t_ray = {}
    for n in [int(x) for x in a.workers.split(",")]:
        t = time.perf_counter()
        res = cluster.scan([folder], a.model, work / f"ray{n}", workers=n, batch_size=a.batch_size)
        t_ray[n] = time.perf_counter() - t
        same = [r.path for r in res.ranked] == [r.path for r in local.ranked]
        lines.append(f"ray, {n} model worker(s): {t_ray[n]:.1f} s, {a.images / t_ray[n]:.2f} images/s, "
                     f"x{t_local / t_ray[n]:.2f} of local; same ranking as local: {same}")
    ray.shutdown()
    if 1 in t_ray:
        lines.append(f"Ray overhead per image (ray-1 - local) / images: {(t_ray[1] - t_local) / a.images * 1e3:.0f} ms")
    lines.append("decode + preprocess, ms per image on one core:")
    lines += [f"  {name}: {ms:.1f}" for name, ms in decode_costs(model.card.preprocessing)]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
