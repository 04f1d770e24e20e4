"""Scanner speed, as ratios against baselines measured in the same run on the same images.

- scan throughput (decode + one forward + one backward per explained label, compactness; the default
  explains the most probable label, ``--label positive`` every positive one) vs plain inference
  (`Predictor`, the `cxrinspect predict` path: onnxruntime on CPU) and vs a per-image captum `Saliency` loop
  (decode, forward for the top label, captum's backward, one image at a time);
- the same two ratios on decoded, preprocessed images (model compute only: what batching buys apart from
  decoding, which the scan runs ahead in threads and the loops do inline);
- all-label CAM overlays (one forward) vs pytorch-grad-cam's GradCAM making the same maps (one pass per label);
- memory: resident set size after the first images and at the end of a long scan (flat = bounded).

    .venv/bin/python bench/scan_speed.py [--images 64] [--model resources/models/kermany-densenet121-clean]
        [--memory 1000] [--device cuda]

Images: held-out Kermany files from ../shared/data when present, else resources/samples repeated.
Pause other CPU work (training) while it runs: the ratios are only fair on an idle machine.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def image_paths(n: int) -> list[str]:
    kermany = ROOT.parent / "shared" / "data" / "kermany"
    files = sorted(str(p) for p in kermany.rglob("*.jpeg")) if kermany.is_dir() else []
    if not files:
        files = sorted(str(p) for p in (ROOT / "resources" / "samples").iterdir() if p.suffix in (".jpeg", ".dcm"))
    return list(itertools.islice(itertools.cycle(files), n)) if len(files) < n else files[::max(1, len(files) // n)][:n]


def timed(label: str, fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    rate = n / (time.perf_counter() - t0)
    print(f"  {label:<46} {rate:8.2f} img/s", flush=True)
    return rate


def main(argv=None) -> int:
    from cxrinspect.cli import default_model_path
    from cxrinspect.imaging import load
    from cxrinspect.inference import Predictor
    from cxrinspect.model import load as load_model
    from cxrinspect.model import prepare
    from cxrinspect.saliency import Logits, class_activation_maps
    from cxrinspect.scan import Scanner

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--images", type=int, default=64, help="images for the throughput ratios (0: skip them)")
    ap.add_argument("--memory", type=int, default=0, help="also scan this many images and track memory")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda; plain inference is then PyTorch on it")
    a = ap.parse_args(argv)
    device = torch.device(a.device)

    def synced(fn):  # CUDA runs asynchronously: a timing ends when the device is done
        def run():
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out
        return run
    model = load_model(a.model)
    if a.images:  # --images 0: memory only, in a process that has run nothing else
        paths = image_paths(a.images)
        n = len(paths)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} torch threads"
        print(f"{n} images, model {model.card.name}, {a.device} ({where})")
        baseline = load_model(a.model)  # untouched (the Scanner freezes its own model's weights in place)
        baseline.network.to(device)
        predictor = Predictor.open(a.model, device=a.device)  # the CLI's default path (onnxruntime on CPU)
        scanner = Scanner(model, device=a.device)  # the defaults: the top label, 8 images a batch (32 on a GPU)
        positive_scanner = Scanner(model, label="positive", device=a.device)
        warm = paths[:32]  # warm-ups at the timed batch sizes (oneDNN and cuDNN pick kernels per shape)
        list(predictor.predict_paths(warm))
        list(scanner.scan(warm))
        list(positive_scanner.scan(warm))

        print("throughput (decode included everywhere):")
        plain = timed(f"plain inference ({predictor.description})", lambda: list(predictor.predict_paths(paths)), n)
        scan = timed("cxrinspect scan (default: top label)", lambda: list(scanner.scan(paths)), n)
        positive = timed("cxrinspect scan --label positive", lambda: list(positive_scanner.scan(paths)), n)

        from captum.attr import Saliency

        wrapped = Logits(baseline.network).eval()

        def captum_loop():
            sal = Saliency(wrapped)
            for p in paths:
                x = torch.from_numpy(prepare(load(p), model.card.preprocessing))[None].to(device)
                with torch.no_grad():
                    top = int(wrapped(x).argmax())
                sal.attribute(x, target=top, abs=True).cpu()  # the map, ready to draw

        sal = Saliency(wrapped)  # warm-up (CUDA kernels, oneDNN primitives for a batch of one)
        for _ in range(2):
            sal.attribute(torch.from_numpy(prepare(load(paths[0]), model.card.preprocessing))[None].to(device), target=0)
        captum = timed("captum Saliency, one image at a time", captum_loop, n)

        from cxrinspect.model.preprocess import model_view, normalise

        unit_views = np.stack([model_view(load(p), model.card.preprocessing) for p in paths])
        tensors = torch.from_numpy(normalise(unit_views, model.card.preprocessing)).to(device)  # decoded once

        def scan_compute():
            for s in range(0, n, scanner.batch_size):
                scanner.maps(unit_views[s:s + scanner.batch_size])

        def captum_compute():
            sal = Saliency(wrapped)
            for i in range(n):
                x = tensors[i:i + 1]
                with torch.no_grad():
                    top = int(wrapped(x).argmax())
                sal.attribute(x, target=top, abs=True).cpu()

        print("model compute only (images decoded and preprocessed beforehand):")
        scan_c = timed(f"cxrinspect scan maps, batches of {scanner.batch_size}", synced(scan_compute), n)
        captum_c = timed("captum Saliency, one image at a time", synced(captum_compute), n)

        views = tensors[:16]
        labels = list(range(len(model.labels)))
        print(f"all-label CAM maps on {len(views)} preprocessed images ({len(labels)} labels each):")
        class_activation_maps(baseline.network, views[:8])  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(views), 8):
            class_activation_maps(baseline.network, views[s:s + 8])
        synced(lambda: None)()
        ours = len(views) / (time.perf_counter() - t0)
        print(f"  {'cxrinspect CAM, one forward for all labels':<46} {ours:8.2f} img/s")
        try:
            from pytorch_grad_cam import GradCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        except ImportError:
            gradcam = None
            print("  pytorch-grad-cam not installed (pip install grad-cam): comparison skipped")
        else:
            cam = GradCAM(model=wrapped, target_layers=[wrapped.relu])
            cam(input_tensor=views[:8], targets=[ClassifierOutputTarget(0)] * 8)  # warm-up
            t0 = time.perf_counter()
            for s in range(0, len(views), 8):
                x = views[s:s + 8]
                for j in labels:
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(j)] * len(x))
            gradcam = len(views) / (time.perf_counter() - t0)
            print(f"  {'pytorch-grad-cam GradCAM, one pass per label':<46} {gradcam:8.2f} img/s")

        print("ratios:")
        print(f"  scan / plain inference          {scan / plain:6.2f}x   (goal >= 0.3x; --label positive: {positive / plain:.2f}x)")
        print(f"  scan / per-image captum         {scan / captum:6.2f}x   (goal >= 3x; --label positive: {positive / captum:.2f}x)")
        print(f"  the same, model compute only    {scan_c / captum_c:6.2f}x")
        if gradcam:
            print(f"  CAM all labels / pytorch-grad-cam {ours / gradcam:6.2f}x (goal >= 10x for 3 labels)")

    if a.memory:
        many = image_paths(a.memory)
        marks = {0: rss_mb()}
        for i, _ in enumerate(Scanner(model, device=a.device).scan(many), 1):
            if i in (100, len(many)) or i % 250 == 0:
                marks[i] = rss_mb()
        print("memory (resident set, MB) while scanning:", ", ".join(f"{k}: {v:.0f}" for k, v in marks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
