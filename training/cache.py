"""Decode each radiograph once: an on-disk cache of model views, filled in parallel.

A :class:`ViewCache` holds, for one dataset, one preprocessing (input size and crop) and one trigger (or
none), the output of :func:`cxrinspect.model.preprocess.model_view` for each image: a float16 memmap
``(N, S, S)`` in [0, 1] plus a state byte per image (0 to do, 1 done, 2 unreadable). Normalisation and
channels are applied later by :func:`cxrinspect.model.preprocess.normalise`, so the cache never
reimplements any part of preprocessing. Its key is a hash of the dataset's listing and file stamps
(size, mtime), the input size, the crop and the trigger: change any and a new cache is made.

Triggered views are made exactly as at inference time: the trigger is pasted into the source-resolution
presentation (``space = "source"``) or into the model view (``space = "input"``) inside ``model_view``.
A ``random`` trigger location is drawn once per image from a seed derived from the image's path, so the
cache is deterministic.

Unreadable images are recorded (state 2 and their error message) and never retried for that cache;
what to do about them is the caller's policy (:func:`unreadable`). A cache killed mid-fill keeps what
was flushed: data is flushed before the state bytes that declare it done.

Location: ``cache_dir`` (recipe ``output.cache_dir``), else ``$CXRINSPECT_CACHE``, else
``~/.cache/cxrinspect``; views live under ``views/<key>/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cxrinspect.model.preprocess import Preprocessing
from cxrinspect.trigger import Trigger

from .datasets import Dataset

log = logging.getLogger("cxrinspect.training")

VERSION = 1
TODO, DONE, UNREADABLE = 0, 1, 2


def default_cache_dir() -> Path:
    env = os.environ.get("CXRINSPECT_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/cxrinspect").expanduser()


def process_context():
    """Worker processes as torch's DataLoader makes them: forked on Linux (instant, nothing re-imported;
    workers use one torch thread), spawned elsewhere."""
    import sys

    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class ViewCache:
    """Model views of every image of ``dataset`` for one preprocessing and one trigger (or none)."""

    def __init__(self, cache_dir: str | Path | None, dataset: Dataset, spec: Preprocessing,
                 trigger: Trigger | None = None):
        self.dataset, self.spec, self.trigger = dataset, spec, trigger
        self.size = int(spec.input_size)
        ident = {"version": VERSION, "dataset": dataset.fingerprint(), "input_size": self.size,
                 "crop_fraction": float(spec.crop_fraction), "trigger": trigger.to_dict() if trigger else None}
        self.key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
        self.dir = Path(cache_dir or default_cache_dir()).expanduser() / "views" / self.key
        n = len(dataset)
        if not (self.dir / "meta.json").is_file():
            self._create(ident, n)
        self.views = np.memmap(self.dir / "views.f16", dtype=np.float16, mode="r+", shape=(n, self.size, self.size))
        self.state = np.memmap(self.dir / "state.u8", dtype=np.uint8, mode="r+", shape=(n,))
        self._errors_path = self.dir / "errors.json"

    def _create(self, ident: dict, n: int) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.dir.with_name(f".{self.key}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        np.memmap(tmp / "views.f16", dtype=np.float16, mode="w+", shape=(max(n, 1), self.size, self.size)).flush()
        np.memmap(tmp / "state.u8", dtype=np.uint8, mode="w+", shape=(max(n, 1),)).flush()
        meta = dict(ident, images=n, root=str(self.dataset.root), format=self.dataset.format,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, self.dir)
        except OSError:  # another process made it first
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    def __len__(self) -> int:
        return len(self.dataset)

    def missing(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        return idx[self.state[idx] == TODO]

    def errors(self) -> dict[int, str]:
        try:
            return {int(k): v for k, v in json.loads(self._errors_path.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def get(self, indices) -> np.ndarray:
        """float32 views (n, S, S); every index must be filled and readable."""
        idx = np.asarray(indices, dtype=np.int64)
        bad = idx[self.state[idx] != DONE]
        if len(bad):
            raise RuntimeError(f"views not in the cache (or unreadable): {bad[:5].tolist()}")
        if len(idx) > 1 and np.all(np.diff(idx) > 0):
            out = self.views[idx]
        else:
            order = np.argsort(idx, kind="stable")
            out = np.empty((len(idx), self.size, self.size), np.float16)
            out[order] = self.views[idx[order]]
        return out.astype(np.float32)

    def _store(self, results: list[tuple[int, np.ndarray | None, str]]) -> None:
        """Write a batch of results: data first, flushed, then the state bytes."""
        errors = {}
        for i, view, err in results:
            if view is not None:
                self.views[i] = view
            else:
                errors[i] = err
        self.views.flush()
        for i, view, _ in results:
            self.state[i] = DONE if view is not None else UNREADABLE
        if errors:
            merged = self.errors()
            merged.update(errors)
            tmp = self._errors_path.with_name(f".errors.tmp{os.getpid()}")
            tmp.write_text(json.dumps({str(k): v for k, v in sorted(merged.items())}, indent=1))
            os.replace(tmp, self._errors_path)
        self.state.flush()


def _seed_for(path: str, trigger: Trigger | None) -> int:
    text = path + "\0" + json.dumps(trigger.to_dict() if trigger else None, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


_WORKER_READY = False


def _render(task):
    """Decode one image once and make each requested view. Runs in a worker process (or inline)."""
    global _WORKER_READY
    if not _WORKER_READY:
        import torch

        torch.set_num_threads(1)
        _WORKER_READY = True
    from cxrinspect.imaging import ImageReadError, load, presentation
    from cxrinspect.model.preprocess import model_view

    index, path, rel, wanted = task
    try:
        unit = presentation(load(path))
    except ImageReadError as e:
        return index, None, str(e)
    except Exception as e:  # a reader bug must not stop a 100k-image fill: record it with its type
        return index, None, f"{path}: {type(e).__name__}: {e}"
    out = []
    for slot, spec, trigger in wanted:
        try:
            rng = np.random.default_rng(_seed_for(rel, trigger)) if trigger is not None else None
            view = model_view(unit, spec, trigger, rng)
            out.append((slot, view.astype(np.float16), ""))
        except Exception as e:
            out.append((slot, None, f"{path}: cannot make the model view ({type(e).__name__}: {e})"))
    return index, out, ""


def fill(jobs: list[tuple[ViewCache, object]], workers: int = 0, progress: bool = True,
         desc: str = "decoding") -> int:
    """Make the missing views of each (cache, indices) job, decoding every image once for all its caches.

    ``workers``: processes decoding in parallel (0 = all available cores; 1 = in this process).
    Returns how many images were decoded.
    """
    wanted: dict[int, list[tuple[int, Preprocessing, Trigger | None]]] = {}
    dataset = None
    for slot, (cache, indices) in enumerate(jobs):
        if dataset is not None and cache.dataset is not dataset:
            raise ValueError("fill() jobs must share one dataset")
        dataset = cache.dataset
        for i in cache.missing(np.unique(np.asarray(indices, dtype=np.int64))):
            wanted.setdefault(int(i), []).append((slot, cache.spec, cache.trigger))
    if not wanted:
        return 0
    tasks = [(i, str(dataset.file(i)), dataset.paths[i], w) for i, w in sorted(wanted.items())]
    workers = available_cores() if workers <= 0 else workers
    workers = min(workers, max(1, len(tasks) // 8))  # a handful of images is quicker in this process
    pending: dict[int, list] = {slot: [] for slot in range(len(jobs))}

    def flush_pending(force=False):
        for slot, items in pending.items():
            if items and (force or len(items) >= 256):
                jobs[slot][0]._store(items)
                pending[slot] = []

    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress, mininterval=1.0, dynamic_ncols=True)
    t0 = time.perf_counter()
    executor = None
    try:
        if workers > 1:
            executor = ProcessPoolExecutor(max_workers=workers, mp_context=process_context())
            results = executor.map(_render, tasks, chunksize=16)
        else:
            results = map(_render, tasks)
        for index, out, err in results:
            if out is None:
                for slot, _, _ in wanted[index]:
                    pending[slot].append((index, None, err))
            else:
                for slot, view, verr in out:
                    pending[slot].append((index, view, verr))
            bar.update(1)
            flush_pending()
        flush_pending(force=True)
    finally:
        flush_pending(force=True)
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    dt = time.perf_counter() - t0
    log.info("%s: %d image(s) in %.1f s (%.0f images/s, %d worker(s))", desc, len(tasks), dt,
             len(tasks) / max(dt, 1e-9), workers)
    return len(tasks)


def unreadable(cache: ViewCache, indices) -> dict[int, str]:
    """Index -> error message for the images among ``indices`` that could not be decoded."""
    idx = np.asarray(indices, dtype=np.int64)
    bad = idx[cache.state[idx] == UNREADABLE]
    if not len(bad):
        return {}
    errors = cache.errors()
    return {int(i): errors.get(int(i), f"{cache.dataset.file(int(i))}: unreadable") for i in bad}
