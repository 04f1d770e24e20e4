"""Batched prediction: decode and preprocess in worker threads while the model computes.

Backends: PyTorch (CUDA when present, else CPU; channels-last, inference mode) or onnxruntime on
the CPU, the faster CPU path. The ONNX graph is exported once per model (keyed by the card's weights
digest) and cached; with the cache warm, :meth:`Predictor.open` reads only the card and never
imports torch, so the command line starts in a fraction of a second. Saliency always needs PyTorch
(see :mod:`cxrinspect.saliency`).
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..imaging import ImageReadError, Radiograph, load
from ..model.card import ModelCard, read_card
from ..model.preprocess import prepare

BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass
class Prediction:
    """One file's outcome: probabilities in the card's label order, or the error that stopped it."""

    path: str
    probabilities: np.ndarray | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def cuda_available() -> bool:
    """Whether PyTorch can use a CUDA GPU. On Linux without the NVIDIA driver's device node this is
    known without importing torch (which alone takes seconds to import)."""
    if sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
        return False
    import torch

    return torch.cuda.is_available()


def cache_dir() -> Path:
    return Path(os.environ.get("CXRINSPECT_CACHE", Path.home() / ".cache" / "cxrinspect"))


def onnx_cache_path(card: ModelCard) -> Path:
    spec = card.preprocessing
    return cache_dir() / "onnx" / f"{card.weights_sha256[:32]}-{spec.channels}x{spec.input_size}.onnx"


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def read(path: str) -> tuple[Radiograph | None, str | None]:
    """(radiograph, None) or (None, the reason naming the file): a batch never stops for one file."""
    try:
        return load(path), None
    except ImageReadError as e:
        return None, str(e)
    except MemoryError:
        return None, f"{path}: out of memory while decoding"
    except Exception as e:  # a reader bug must not stop a batch; report it with the file
        return None, f"{path}: unexpected {type(e).__name__}: {e}"


def prefetch(items: Iterable, work: Callable, workers: int, window: int) -> Iterator[tuple]:
    """(item, work(item)) in input order, computed ahead in ``workers`` threads, at most ``window`` in flight."""
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        it = iter(items)
        pending = deque((x, pool.submit(work, x)) for x in islice(it, window))
        while pending:
            item, future = pending.popleft()
            for x in islice(it, 1):
                pending.append((x, pool.submit(work, x)))
            yield item, future.result()


class Predictor:
    """Runs a model over normalised batches or over files, in batches.

    ``model`` is a loaded :class:`cxrinspect.model.Model`; :meth:`open` takes a path instead and
    loads the weights only when the backend needs them.
    """

    def __init__(self, model=None, device: str | None = None, batch_size: int = 16, backend: str = "auto",
                 workers: int | None = None, *, card: ModelCard | None = None, model_path: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.card = model.card if model is not None else card
        if self.card is None:
            raise ValueError("Predictor needs a model or a card and its path")
        self.model, self._model_path = model, model_path
        self.batch_size = batch_size
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        if device is None and backend != "onnxruntime":
            device = "cuda" if cuda_available() else "cpu"
        self.device = str(device or "cpu")
        if backend == "auto":
            backend = "onnxruntime" if self.device == "cpu" and _has_onnxruntime() else "torch"
        if backend == "onnxruntime" and self.device != "cpu":
            raise ValueError("the onnxruntime backend runs on the CPU; use backend='torch' for CUDA")
        self.backend = backend
        self._session = self._onnx_session() if backend == "onnxruntime" else None
        if backend == "torch":
            import torch

            self.network = self._model().network.eval().to(torch.device(self.device),
                                                           memory_format=torch.channels_last)

    @classmethod
    def open(cls, path: str | os.PathLike, device: str | None = None, batch_size: int = 16, backend: str = "auto",
             workers: int | None = None) -> "Predictor":
        """A predictor for the model at ``path``; raises :class:`cxrinspect.model.CheckpointError`."""
        return cls(None, device, batch_size, backend, workers, card=read_card(path), model_path=os.fspath(path))

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    @property
    def description(self) -> str:
        return f"{self.backend} on {self.device}"

    def _model(self):
        if self.model is None:
            from ..model.checkpoint import load as load_model

            self.model = load_model(self._model_path)
        return self.model

    def _onnx_session(self):
        from ..model.onnx_export import export_onnx, onnx_session

        path = onnx_cache_path(self.card) if self.card.weights_sha256 else None
        if path is None or not path.is_file():
            model = self._model()
            path = onnx_cache_path(model.card) if model.card.weights_sha256 else None
            if path is None:  # a model built in memory, never saved: no digest to key the cache
                from ..model.checkpoint import weights_digest

                model.card.weights_sha256 = weights_digest(model.network.state_dict())
                path = onnx_cache_path(model.card)
            diff = export_onnx(model, path)
            if diff > 1e-3:
                path.unlink()
                raise RuntimeError(f"ONNX export of {self.card.name or 'the model'} differs from PyTorch by "
                                   f"{diff:.3g}; use backend='torch'")
        return onnx_session(path)

    def logits(self, batch) -> np.ndarray:
        """Logits for a normalised batch N x C x H x W (numpy or torch)."""
        if self._session is not None:
            x = batch if isinstance(batch, np.ndarray) else batch.detach().cpu().numpy()
            return self._session.run(["logits"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            return self.network(x).float().cpu().numpy()

    def probabilities(self, batch) -> np.ndarray:
        """Independent sigmoid probabilities for a normalised batch, N x labels."""
        from scipy.special import expit  # no overflow warning for a confident logit

        return expit(self.logits(batch).astype(np.float64)).astype(np.float32)

    def _prepare(self, path: str) -> tuple[np.ndarray | None, str | None, list[str]]:
        rg, error = read(path)
        return (None, error, []) if rg is None else (prepare(rg, self.card.preprocessing), None, rg.warnings)

    def _prepared(self, paths: Iterable[str]) -> Iterator[tuple[str, tuple]]:
        return prefetch(paths, self._prepare, self.workers, max(2 * self.batch_size, 2 * self.workers))

    def predict_paths(self, paths: Iterable[str | os.PathLike],
                      cancelled: Callable[[], bool] | None = None) -> Iterator[Prediction]:
        """One :class:`Prediction` per path, in order; unreadable files give an error, never an exception."""
        batch: list[tuple[str, np.ndarray, list[str]]] = []

        def flush():
            probs = self.probabilities(np.stack([x for _, x, _ in batch]))
            out = [Prediction(p, probs[i], None, w) for i, (p, _, w) in enumerate(batch)]
            batch.clear()
            return out

        for path, (x, error, notes) in self._prepared(map(os.fspath, paths)):
            if cancelled is not None and cancelled():
                return
            if error is not None:
                if batch:  # keep the order: finish the batch in flight first
                    yield from flush()
                yield Prediction(path, None, error, notes)
                continue
            batch.append((path, x, notes))
            if len(batch) == self.batch_size:
                yield from flush()
        if batch:
            yield from flush()
