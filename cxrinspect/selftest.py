"""``cxrinspect self-test``: prove this installation works, one step at a time.

Each step uses the bundled samples and the bundled clean model through the same code the app and the
CLI run: decode every bundled DICOM encoding (JPEG baseline, JPEG 2000 MONOCHROME1 ...), one
onnxruntime forward (exported afresh into a throwaway cache), one PyTorch forward, one saliency map
and a 3-image scan. It reports each step and exits non-zero naming the first step that failed; the
frozen build (make package-check) and CI run it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import __version__, resources

EXIT_OK, EXIT_FAILED = 0, 1
MODEL = "kermany-densenet121-clean"


class StepFailed(RuntimeError):
    pass


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise StepFailed(message)


def _dicoms() -> list[Path]:
    found = sorted(resources.samples().glob("*.dcm"))
    _check(bool(found), f"no DICOM samples in {resources.samples()}")
    return found


def _rasters(n: int) -> list[Path]:
    found = sorted(p for p in resources.samples().iterdir() if p.suffix.lower() in (".png", ".jpeg", ".jpg"))
    _check(len(found) >= n, f"need {n} raster samples in {resources.samples()}, found {len(found)}")
    return found[:n]


def step_decode() -> str:
    import numpy as np
    import pydicom

    from .imaging import load

    done = []
    for path in _dicoms():
        header = pydicom.dcmread(path, stop_before_pixels=True)
        syntax, photometric = header.file_meta.TransferSyntaxUID, header.get("PhotometricInterpretation", "?")
        rg = load(path)  # raises ImageReadError naming the file (a missing decoder says so)
        px = np.asarray(rg.pixels, dtype=np.float64)
        _check(px.ndim == 2 and px.size > 0, f"{path.name}: decoded to shape {px.shape}")
        _check(bool(np.isfinite(px).all()) and float(px.max()) > float(px.min()),
               f"{path.name}: decoded pixels are constant or not finite")
        done.append(f"{path.name} ({syntax.name}, {photometric}, {px.shape[1]}x{px.shape[0]})")
    return "; ".join(done)


def _model_path() -> Path:
    path = resources.model_dir(MODEL)
    _check((path / "card.json").is_file(), f"bundled model missing: {path}")
    return path


def _batch(card):
    import numpy as np

    from .imaging import load
    from .model import prepare

    return np.stack([prepare(load(p), card.preprocessing) for p in _rasters(2)])


def _forward(backend: str, state: dict) -> str:
    import numpy as np

    from .inference import Predictor

    predictor = Predictor.open(_model_path(), device="cpu", backend=backend)
    probs = predictor.probabilities(_batch(predictor.card))
    _check(probs.shape == (2, len(predictor.labels)), f"{backend}: output shape {probs.shape}")
    _check(bool(np.isfinite(probs).all()) and bool(((probs >= 0) & (probs <= 1)).all()),
           f"{backend}: probabilities outside [0, 1]")
    state[backend] = probs
    top = predictor.labels[int(probs[0].argmax())]
    return f"{predictor.description}: {probs.shape[0]} images, top label {top} ({probs[0].max():.3f})"


def step_onnxruntime(state: dict) -> str:
    with tempfile.TemporaryDirectory(prefix="cxrinspect-selftest-") as cache:
        old = os.environ.get("CXRINSPECT_CACHE")
        os.environ["CXRINSPECT_CACHE"] = cache  # export afresh: the exporter is part of what is tested
        try:
            return _forward("onnxruntime", state)
        finally:
            if old is None:
                os.environ.pop("CXRINSPECT_CACHE", None)
            else:
                os.environ["CXRINSPECT_CACHE"] = old


def step_torch(state: dict) -> str:
    import numpy as np

    text = _forward("torch", state)
    if "onnxruntime" in state:
        diff = float(np.abs(state["onnxruntime"] - state["torch"]).max())
        _check(diff < 1e-3, f"onnxruntime and PyTorch disagree by {diff:.3g}")
        text += f"; max difference to onnxruntime {diff:.1e}"
    return text


def step_saliency() -> str:
    import numpy as np

    from .imaging import load
    from .model import load as load_model
    from .saliency import explain

    model = load_model(_model_path())
    rg = load(_dicoms()[0])
    smap = explain(model, rg, [model.labels[0]], "gradient", device="cpu")
    _check(smap.shape[1:] == rg.pixels.shape, f"map shape {smap.shape} for an image of {rg.pixels.shape}")
    _check(bool(np.isfinite(smap).all()) and float(smap.max()) > 0, "the saliency map is empty or not finite")
    return f"gradient map of {model.labels[0]} on {Path(rg.path).name}: {smap.shape[2]}x{smap.shape[1]}"


def step_scan() -> str:
    from .model import load as load_model
    from .scan import scan

    model = load_model(_model_path())
    paths = _rasters(3)
    with tempfile.TemporaryDirectory(prefix="cxrinspect-selftest-") as out:
        result = scan([str(p) for p in paths], model, out, device="cpu", batch_size=3, verify_top=1)
        _check(not result.errors, "unreadable: " + "; ".join(str(r.error) for r in result.errors))
        _check(len(result.ranked) == 3, f"{len(result.ranked)} of 3 images ranked")
        html = Path(result.files.get("html", ""))
        _check(html.is_file() and html.stat().st_size > 0, "no HTML report written")
        return f"3 images ranked (top score {result.ranked[0].score:.3f}), report written"


def steps() -> list[tuple[str, Callable[[dict], str]]]:
    return [("decode DICOM", lambda s: step_decode()),
            ("onnxruntime forward", step_onnxruntime),
            ("torch forward", step_torch),
            ("saliency map", lambda s: step_saliency()),
            ("3-image scan", lambda s: step_scan())]


def run(out=None, only: list[str] | None = None) -> int:
    """Run every step, print one line each; the exit code and a last line name the failed steps."""
    out = out or sys.stdout
    print(f"cxrinspect {__version__} self-test ({'frozen' if resources.is_frozen() else 'from source'}; "
          f"resources {resources.root()})", file=out, flush=True)
    state: dict = {}
    failed = []
    for name, fn in steps():
        if only and name not in only:
            continue
        t = time.perf_counter()
        try:
            detail = fn(state)
        except Exception as e:  # noqa: BLE001 - every failure is reported under its step's name
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", file=out, flush=True)
            if os.environ.get("CXRINSPECT_SELFTEST_TRACEBACK"):
                traceback.print_exc(file=out)
            continue
        print(f"ok   {name} ({time.perf_counter() - t:.1f} s): {detail}", file=out, flush=True)
    if failed:
        print(f"self-test FAILED: {', '.join(failed)}", file=out, flush=True)
        return EXIT_FAILED
    print("self-test passed", file=out, flush=True)
    return EXIT_OK
