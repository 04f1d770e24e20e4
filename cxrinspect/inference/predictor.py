"""Batched prediction: decode and preprocess in worker threads while the model computes.

Backends: PyTorch (CUDA when present, else CPU; channels-last, inference mode) or onnxruntime on
the CPU (exported once per model and cached), which is the faster CPU path. Saliency always needs
PyTorch; see :mod:`cxrinspect.saliency`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ..imaging import ImageReadError, load
from ..model.checkpoint import Model, weights_digest
from ..model.preprocess import preprocess

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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_dir() -> Path:
    return Path(os.environ.get("CXRINSPECT_CACHE", Path.home() / ".cache" / "cxrinspect"))


class Predictor:
    """Runs a :class:`Model` over tensors or files, in batches."""

    def __init__(self, model: Model, device: str | torch.device | None = None, batch_size: int = 16,
                 backend: str = "auto", workers: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.device = torch.device(device) if device else default_device()
        self.batch_size = batch_size
        self.workers = workers or max(1, min(4, (os.cpu_count() or 1)))
        if backend == "auto":
            backend = "onnxruntime" if self.device.type == "cpu" and _has_onnxruntime() else "torch"
        self.backend = backend
        self._session = None
        if backend == "torch":
            self.network = model.network.eval().to(self.device, memory_format=torch.channels_last)
        else:
            if self.device.type != "cpu":
                raise ValueError("the onnxruntime backend runs on the CPU; use backend='torch' for CUDA")
            self._session = self._onnx_session()

    @property
    def description(self) -> str:
        return f"{self.backend} on {self.device}"

    def _onnx_session(self):
        from ..model.onnx_export import export_onnx, onnx_session

        card = self.model.card
        digest = card.weights_sha256 or weights_digest(self.model.network.state_dict())
        spec = card.preprocessing
        path = cache_dir() / "onnx" / f"{digest[:32]}-{spec.channels}x{spec.input_size}.onnx"
        if not path.is_file():
            diff = export_onnx(self.model, path)
            if diff > 1e-3:
                path.unlink()
                raise RuntimeError(f"ONNX export of {card.name or 'the model'} differs from PyTorch by {diff:.3g}; "
                                   "use backend='torch'")
        return onnx_session(path)

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits for a normalised batch N x C x H x W."""
        if self._session is not None:
            return self._session.run(["logits"], {"input": batch.numpy().astype(np.float32, copy=False)})[0]
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            return self.network(x).float().cpu().numpy()

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Independent sigmoid probabilities for a normalised batch, N x labels."""
        z = self.logits(batch).astype(np.float64)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def _prepare(self, path: str) -> tuple[torch.Tensor | None, str | None, list[str]]:
        try:
            rg = load(path)
            return preprocess(rg, self.model.card.preprocessing), None, rg.warnings
        except ImageReadError as e:
            return None, str(e), []
        except MemoryError:
            return None, f"{path}: out of memory while decoding", []
        except Exception as e:  # a reader bug must not stop a batch; report it with the file
            return None, f"{path}: unexpected {type(e).__name__}: {e}", []

    def _prepared(self, paths: Iterable[str]) -> Iterator[tuple[str, tuple]]:
        """Decode ahead in worker threads, at most a few batches in flight, in input order."""
        window = max(2 * self.batch_size, 2 * self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            it = iter(paths)
            pending = deque((p, pool.submit(self._prepare, p)) for p in islice(it, window))
            while pending:
                path, future = pending.popleft()
                for p in islice(it, 1):
                    pending.append((p, pool.submit(self._prepare, p)))
                yield path, future.result()

    def predict_paths(self, paths: Iterable[str | os.PathLike],
                      cancelled: Callable[[], bool] | None = None) -> Iterator[Prediction]:
        """One :class:`Prediction` per path, in order; unreadable files give an error, never an exception."""
        batch: list[tuple[str, torch.Tensor, list[str]]] = []

        def flush():
            probs = self.probabilities(torch.stack([t for _, t, _ in batch]))
            out = [Prediction(p, probs[i], None, w) for i, (p, _, w) in enumerate(batch)]
            batch.clear()
            return out

        for path, (tensor, error, notes) in self._prepared(map(os.fspath, paths)):
            if cancelled is not None and cancelled():
                return
            if error is not None:
                # keep order: finish the batch in flight first
                if batch:
                    yield from flush()
                yield Prediction(path, None, error, notes)
                continue
            batch.append((path, tensor, notes))
            if len(batch) == self.batch_size:
                yield from flush()
        if batch:
            yield from flush()


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False
