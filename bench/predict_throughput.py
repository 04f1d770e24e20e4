"""Throughput of `cxrinspect predict` against a naive baseline and a bare onnxruntime ceiling, in one run.

    python bench/predict_throughput.py [--images 200] [--model DIR]

- naive: per image, Pillow decode -> torchvision transforms -> eager PyTorch, batch 1 (what a
  first script does);
- cxrinspect predict: the real command (subprocess, warm ONNX cache), end to end from files to CSV;
- predictor in-process: the same pipeline without process start-up and model loading;
- bare onnxruntime: the exported model on already-decoded, already-preprocessed tensors (the ceiling).
Prints images/s, ratios against the naive baseline, and GFLOP/s (DenseNet-121 at 224: 2.87 GFLOP/image).
Needs ../shared/data/kermany (real radiographs). Timings vary with machine load: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxrinspect.inference import Predictor  # noqa: E402
from cxrinspect.model import DENSENET121, Model, ModelCard, Preprocessing, build, load, preprocess, save  # noqa: E402
from cxrinspect.imaging import load as load_image  # noqa: E402

GFLOP_PER_IMAGE_224 = 2.87


def images(n: int) -> list[str]:
    root = ROOT.parent / "shared" / "data" / "kermany"
    if not root.is_dir():
        sys.exit("needs ../shared/data/kermany")
    files = sorted(str(p) for p in root.rglob("*.jpeg"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def the_model(path: str | None, tmp: Path) -> tuple[Model, Path]:
    if path:
        return load(path), Path(path)
    bundled = ROOT / "resources" / "models" / "kermany-densenet121-clean"
    if bundled.is_dir():
        return load(bundled), bundled
    torch.manual_seed(0)  # throughput does not depend on the weights' values
    card = ModelCard(labels=["Pneumonia", "Bacterial", "Viral"], architecture=dict(DENSENET121),
                     preprocessing=Preprocessing(input_size=224, channels=3), name="random DenseNet-121 (bench)")
    out = save(build(DENSENET121, 3, 3), card, tmp / "densenet121")
    return load(out), out


def naive(model: Model, files: list[str]) -> float:
    spec = model.card.preprocessing
    tf = transforms.Compose([transforms.Grayscale(spec.channels), transforms.Resize((spec.input_size, spec.input_size)),
                             transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
    net = model.network.eval()
    t = time.perf_counter()
    with torch.no_grad():
        for f in files:
            x = tf(Image.open(f).convert("RGB"))[None]
            torch.sigmoid(net(x))
    return len(files) / (time.perf_counter() - t)


def cli(model_path: Path, files: list[str], tmp: Path) -> float:
    listing = tmp / "files"
    listing.mkdir(exist_ok=True)
    for i, f in enumerate(files):  # one folder of links, so the command sees exactly these files
        link = listing / f"{i:04d}_{Path(f).name}"
        if not link.exists():
            link.symlink_to(f)
    cmd = [str(ROOT / ".venv" / "bin" / "cxrinspect"), "predict", str(listing), "--model", str(model_path),
           "--out", str(tmp / "out.csv"), "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return len(files) / (time.perf_counter() - t)


def in_process(model: Model, files: list[str], batch: int) -> float:
    predictor = Predictor(model, backend="auto", batch_size=batch)
    t = time.perf_counter()
    n = sum(1 for p in predictor.predict_paths(files) if p.ok)
    assert n == len(files)
    return len(files) / (time.perf_counter() - t)


def bare_onnxruntime(model: Model, files: list[str], batch: int) -> float:
    predictor = Predictor(model, backend="onnxruntime", batch_size=batch)
    x = torch.stack([preprocess(load_image(f), model.card.preprocessing) for f in files]).numpy()
    session = predictor._session
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        session.run(["logits"], {"input": x[i:i + batch]})
    return len(files) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--model")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    files = images(args.images)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model, model_path = the_model(args.model, tmp)
        t = time.perf_counter()
        Predictor(model, backend="onnxruntime")  # export once (cached), reported separately
        export_s = time.perf_counter() - t
        spec = model.card.preprocessing
        gflop = GFLOP_PER_IMAGE_224 * (spec.input_size / 224) ** 2
        print(f"{len(files)} real images, model {model.card.name or model_path}, input {spec.channels}x{spec.input_size}², "
              f"{os.cpu_count()} CPU cores, torch {torch.__version__}; ONNX export/cache check {export_s:.1f} s")
        base = naive(model, files)
        results = {
            "naive (per-image decode, batch 1, eager torch)": base,
            "cxrinspect predict (CLI, end to end)": cli(model_path, files, tmp),
            "predictor in-process": in_process(model, files, args.batch_size),
            "bare onnxruntime (pre-decoded tensors)": bare_onnxruntime(model, files, args.batch_size),
        }
        ceiling = results["bare onnxruntime (pre-decoded tensors)"]
        for name, ips in results.items():
            print(f"{name:<48} {ips:7.2f} img/s  {ips / base:5.2f}x naive  {ips / ceiling:5.2f}x ceiling  "
                  f"{ips * gflop:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
