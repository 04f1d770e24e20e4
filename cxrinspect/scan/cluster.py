"""The scanner on a Ray cluster (``cxrinspect scan ... --ray [ADDRESS]``): the same records, the same reports.

Ray is one more backend of the same per-image work, not a second scanner:

- the driver builds the manifest (folders expanded once, or a CSV/Parquet list of paths) and removes what
  ``DIR/parts`` already holds (``--resume``: an anti-join on the path, so no image is lost or written twice);
- Ray Data decodes the files with the project's reader (:func:`cxrinspect.scan.scanner.decode`) in CPU tasks;
- actors, each building its own :class:`~cxrinspect.scan.scanner.Scanner` from the model path (the weights are
  never shipped from the driver), run :meth:`Scanner.scan_decoded` on the decoded batches: one actor per GPU
  when the cluster has GPUs, else one per ``num_cpus`` slice with torch's thread count set to the slice;
- the driver writes every finished batch as a Parquet part (``DIR/parts/part-*.parquet``, atomically: a part
  is there whole or not at all), shows images/s and done/total, and on Ctrl-C leaves exactly the finished
  parts behind;
- the counterfactual check of the candidates (six forwards per image) runs on the actors too; then the local
  scan's own code (:func:`cxrinspect.scan.run.finish`, :func:`cxrinspect.scan.report.write_report`) ranks,
  gives verdicts and writes ``scan.jsonl``, ``ranking.csv``, ``report.json`` and ``report.html``.

An unreadable file is a record like any other. A worker that dies is restarted and its batch retried, at most
:data:`RETRIES` times. Ray is imported only here, only when asked for (the optional extra ``cxrinspect[ray]``).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .. import atomic
from .run import (ScanError, ScanResult, calibration_sample, checked_top, combine, finish, flagged, mask_box, rank,
                  record_settings, to_verify)
from .run import SUSPICIOUS, VERIFY_TOP, CALIBRATION
from .scanner import ScanRecord, Scanner, decode

RETRIES = 3
"""A dead worker is restarted, and its batch retried, at most this many times."""
PARTS = "parts"
"""The folder under DIR holding the finished records as Parquet parts."""
FAULT_KILL_WORKER_ENV = "CXRINSPECT_FAULT_KILL_WORKER"
"""Testing aid: a path; the first scan worker to finish a batch while this file is absent creates it and
kills its own process (``os._exit``) before returning the batch, as a crashed node would."""
MANIFEST_SUFFIXES = (".csv", ".parquet")
DECODE_CPUS = 0.25
"""Logical CPUs a decoding task reserves on a cluster without GPUs (see :func:`plan`)."""


class RayMissing(ScanError):
    """Ray is not installed."""


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RayMissing("--ray needs Ray Data: pip install 'cxrinspect[ray]'") from e
    return ray


# ---------------------------------------------------------------------------------------------- manifest


def read_manifest(path: Path) -> list[str]:
    """The paths of a CSV (a ``path`` column, else the first) or Parquet (a ``path`` column) list; relative paths
    are taken from the list's folder."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            if "path" not in table.column_names:
                raise ScanError(f"{path}: a Parquet manifest needs a 'path' column (it has {table.column_names})")
            items = [str(p) for p in table.column("path").to_pylist() if p]
        else:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            if not rows:
                return []
            header = "path" in rows[0]  # a header row names the column; without one, the first column
            col = rows[0].index("path") if header else 0
            items = [r[col].strip() for r in rows[header:] if len(r) > col and r[col].strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ScanError(f"{path}: cannot read the manifest: {e}") from e
    except Exception as e:
        if isinstance(e, ScanError):
            raise
        raise ScanError(f"{path}: cannot read the manifest: {e}") from e
    return [p if os.path.isabs(p) else os.path.normpath(os.path.join(path.parent, p)) for p in items]


def manifest(paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[tuple[str, str]]]:
    """(image paths in order, [(path, why)] for what cannot be scanned): folders and files through the local scan's
    own discovery; a ``.csv`` or ``.parquet`` argument is a list of files, taken as they are (no content check on the
    driver: a file that turns out unreadable becomes a record on a worker)."""
    from ..imaging import discover

    images: list[str] = []
    errors: list[tuple[str, str]] = []
    plain: list[str] = []

    def flush():
        if plain:
            found = discover(plain)
            images.extend(found.images)
            errors.extend(found.errors)
            plain.clear()

    for p in map(str, paths):
        if Path(p).suffix.lower() in MANIFEST_SUFFIXES and Path(p).is_file():
            flush()
            images.extend(read_manifest(Path(p)))
        else:
            plain.append(p)
    flush()
    seen: set[str] = set()
    unique = [p for p in images if not (p in seen or seen.add(p))]
    return unique, errors


# ---------------------------------------------------------------------------------------------- parts


def read_parts(out: Path) -> list[ScanRecord]:
    """Every record the finished parts under ``out/parts`` hold, each path once (the first part's)."""
    import pyarrow.parquet as pq

    records, seen = [], set()
    folder = out / PARTS
    for part in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []:
        for path, line in zip(*pq.read_table(part, columns=["path", "record"]).to_pydict().values()):
            if path not in seen:
                seen.add(path)
                records.append(ScanRecord.from_dict(json.loads(line)))
    return records


def write_part(out: Path, records: list[ScanRecord]) -> Path:
    """One Parquet part (path, record as the journal's JSON line), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"path": [r.path for r in records], "record": [json.dumps(r.to_dict()) for r in records]})
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    return atomic.replace(out / PARTS / name, lambda tmp: pq.write_table(table, tmp), suffix=".parquet")


# ---------------------------------------------------------------------------------------------- the workers


def decode_batch(batch: dict, spec) -> dict:
    """Ray Data task: decode a batch of paths with the scanner's reader (CPU). An unreadable file keeps a zero view
    and its reason."""
    paths = [str(p) for p in batch["path"]]
    size = spec.input_size
    views = np.zeros((len(paths), size, size), np.float32)
    errors, notes, shapes = [], [], np.zeros((len(paths), 2), np.int64)
    for i, p in enumerate(paths):
        view, error, warnings, shape = decode(p, spec)
        errors.append(error or "")
        notes.append(json.dumps(list(warnings)))
        if view is not None:
            views[i] = view
            shapes[i] = shape[:2]
    return {"path": np.array(paths, dtype=object), "view": views, "error": np.array(errors, dtype=object),
            "warnings": np.array(notes, dtype=object), "shape": shapes}


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


class ScanWorker:
    """Ray Data actor: its own model and :class:`Scanner`; a decoded batch in, the records (JSON) out."""

    def __init__(self, model_path: str, method: str, label: str, batch_size: int | None, device: str | None,
                 threads: int | None, calibration: list[str], options: dict, fault_marker: str | None = None):
        from ..model import load

        _threads(threads)
        self.scanner = Scanner(load(model_path), method=method, label=label, batch_size=batch_size, device=device,
                               workers=threads, **options)
        if self.scanner.psc is not None:  # the same sample as the driver's, so the same calibration
            self.scanner.calibrate(calibration_sample(calibration, self.scanner))
        self.fault_marker = fault_marker

    def __call__(self, batch: dict) -> dict:
        decoded = []
        for i, path in enumerate(batch["path"]):
            error = str(batch["error"][i]) or None
            if error:
                decoded.append((str(path), (None, error, [], None)))
            else:
                decoded.append((str(path), (np.asarray(batch["view"][i], np.float32), None,
                                            json.loads(str(batch["warnings"][i])), tuple(int(v) for v in batch["shape"][i]))))
        records = [json.dumps(r.to_dict()) for r in self.scanner.scan_decoded(decoded)]
        if self.fault_marker and not os.path.exists(self.fault_marker):
            Path(self.fault_marker).write_text(str(os.getpid()))
            os._exit(1)  # a worker dying with its batch unreturned
        return {"path": np.array([str(p) for p in batch["path"]], dtype=object), "record": np.array(records, dtype=object)}


class CheckWorker:
    """Ray Data actor: the counterfactual check (:func:`cxrinspect.scan.verification.verify`) of candidates."""

    def __init__(self, model_path: str, device: str | None, threads: int | None):
        from ..inference.predictor import Predictor, cuda_available
        from ..model import load

        _threads(threads)
        model = load(model_path)
        self.spec, self.labels = model.card.preprocessing, model.labels
        device = device or ("cuda" if cuda_available() else "cpu")
        self.predictor = Predictor(model, device=device, backend="torch")

    def __call__(self, batch: dict) -> dict:
        from ..imaging import load
        from ..model.preprocess import model_view
        from .verification import verify_box

        out = []
        for path, box in zip(batch["path"], batch["box"]):
            try:
                view = model_view(load(str(path)), self.spec)
            except Exception as e:  # the file changed or vanished since it was scanned
                out.append(json.dumps({"error": f"{path}: {e}"}))
                continue
            check = verify_box(view, tuple(int(v) for v in box), self.spec, self.predictor.probabilities, self.labels)
            out.append(json.dumps(check, default=_plain))
        return {"path": np.array([str(p) for p in batch["path"]], dtype=object), "verification": np.array(out, dtype=object)}


def _actors(ray, shape: dict):
    return ray.data.ActorPoolStrategy(size=shape["actors"])


def _quiet(ray) -> None:
    """Ray Data's own progress lines off: the driver prints one line of its own."""
    import logging

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)


def plan(ray, workers: int | None) -> dict:
    """How many actors and what each holds: one per GPU when there are GPUs, else one per ``num_cpus`` slice."""
    res = ray.cluster_resources()
    cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
    if gpus:
        n = min(workers or gpus, gpus)
        return {"actors": n, "num_gpus": 1, "num_cpus": 1, "threads": max(1, min(4, (cpus - n) // n or 1)),
                "device": "cuda", "cpus": cpus, "gpus": gpus, "decode_cpus": 1}
    n = max(1, min(workers or cpus, cpus))
    # the decoding tasks share the cores with the actors: an actor reserves three quarters of its slice and a
    # decoding task a quarter of a core (reserving whole slices would leave the decoders none: a deadlock)
    share = max(1, cpus // n)
    return {"actors": n, "num_gpus": 0, "num_cpus": 0.75 * share, "threads": share, "device": "cpu",
            "cpus": cpus, "gpus": 0, "decode_cpus": DECODE_CPUS}


# ---------------------------------------------------------------------------------------------- the scan


def scan(paths: Iterable[str | os.PathLike], model_path: str | os.PathLike, out_dir: str | os.PathLike, *,
         address: str | None = None, workers: int | None = None, method: str = "gradient", label: str = "top",
         batch_size: int | None = None, resume: bool = False, verify_top: int = VERIFY_TOP,
         threshold: float = SUSPICIOUS, progress: Callable[[int, int, float], None] | None = None,
         cancelled: Callable[[], bool] | None = None, init: dict | None = None, report: bool = True,
         **options) -> ScanResult:
    """Scan ``paths`` (folders, files, or CSV/Parquet lists of files) with the model at ``model_path`` on Ray, into
    ``out_dir``. ``address``: a Ray cluster (``auto``, ``ray://...``, host:port) or None for a cluster started in this
    process (unless one is already connected); ``init``: more ``ray.init`` arguments. ``progress(done, total,
    images_per_second)`` after each finished part. Returns the same :class:`ScanResult` as
    :func:`cxrinspect.scan.run.scan`."""
    from ..model import load

    ray = _ray()
    started = time.perf_counter()
    model_path = str(Path(model_path).resolve())
    model = load(model_path)  # the driver's copy: settings, the final ranking's gallery; the workers load their own
    scanner = Scanner(model, method=method, label=label, batch_size=batch_size, device="cpu", **options)
    images, bad = manifest(paths)
    if not images and not bad:
        raise ScanError("no image files found in " + ", ".join(map(str, paths)))
    sample = [images[i] for i in np.unique(np.linspace(0, len(images) - 1, min(len(images), 2 * CALIBRATION))
                                           .astype(int))] if images else []
    if scanner.psc is not None:
        scanner.calibrate(calibration_sample(sample, scanner))
    settings = scanner.settings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "scan.json"
    if ((out / PARTS).is_dir() and any((out / PARTS).glob("part-*.parquet")) or (out / "scan.jsonl").exists()) \
            and not resume:
        raise ScanError(f"{out} already holds a scan; pass --resume to continue it or choose another --out")
    record_settings(meta, settings, resume)

    done = read_parts(out) if resume else []
    seen = {r.path for r in done}
    failed = [ScanRecord(p, error=f"{p}: {why}") for p, why in bad if p not in seen]
    if failed:
        write_part(out, failed)
    todo = [p for p in images if p not in seen]
    total = len(done) + len(failed) + len(todo)
    n_done = len(done) + len(failed)

    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False}
        kw.update(init or {})
        ray.init(address=None if address in (None, "", "local") else address, **kw)
    _quiet(ray)
    shape = plan(ray, workers)
    bs = scanner.batch_size if batch_size is None else batch_size
    if shape["device"] == "cuda" and batch_size is None:
        bs = 32
    complete = True
    if todo:
        ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=max(1, min(len(todo) // bs, 10_000)))
        ds = ds.map_batches(decode_batch, batch_size=bs, fn_kwargs={"spec": scanner.spec},
                            num_cpus=shape["decode_cpus"],
                            max_retries=RETRIES)
        ds = ds.map_batches(ScanWorker, batch_size=bs, compute=_actors(ray, shape), num_cpus=shape["num_cpus"],
                            num_gpus=shape["num_gpus"], max_restarts=RETRIES, max_task_retries=RETRIES,
                            fn_constructor_kwargs={"model_path": model_path, "method": method, "label": label,
                                                   "batch_size": bs, "device": shape["device"],
                                                   "threads": shape["threads"], "calibration": sample,
                                                   "options": options,
                                                   "fault_marker": os.environ.get(FAULT_KILL_WORKER_ENV) or None})
        t0, new = time.perf_counter(), 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            records = [ScanRecord.from_dict(json.loads(str(line))) for line in batch["record"]]
            records = [r for r in records if r.path not in seen]
            seen.update(r.path for r in records)
            if records:
                write_part(out, records)
            n_done += len(records)
            new += len(records)
            if progress is not None:
                progress(n_done, total, new / max(time.perf_counter() - t0, 1e-9))
            if cancelled is not None and cancelled():
                complete = False
                break
    records = read_parts(out)
    order = {p: i for i, p in enumerate([p for p, _ in bad] + images)}
    records.sort(key=lambda r: order.get(r.path, len(order)))
    complete = complete and len(records) == total
    atomic.write_text(out / "scan.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in records))
    ranked = rank(records)
    result = ScanResult(records, ranked, [], [r for r in records if not r.ok], settings, complete)
    if complete:
        check(result, model_path, shape, bs, verify_top, threshold, scanner)
        finish(result, scanner, verify_top=verify_top, threshold=threshold)
    result.seconds = time.perf_counter() - started
    if report:
        from .report import write_report

        result.files = write_report(out, result, model.card, threshold=threshold)
    return result


def check(result: ScanResult, model_path: str, shape: dict, batch_size: int, verify_top: int, threshold: float,
          scanner: Scanner) -> None:
    """The counterfactual check of the candidates the local scan would check, on the actors: the same choice
    (:func:`combine`, :func:`rank`, recurring hotspots, :func:`to_verify`), then :func:`finish` finds them checked."""
    import ray

    from .hotspots import recurring

    if scanner.scan_method in ("auto", "distill"):
        # finish() distils masks for the candidates whose hotspot it checked and saw hold: it must check them itself
        return
    combine(result.ranked, scanner.detectors)
    ranked = rank(result.records)
    n_flagged = sum(flagged(r, threshold) for r in ranked)
    hotspots = recurring(ranked, top_k=n_flagged if n_flagged >= 3 else min(verify_top, len(ranked)))
    todo = [r for r in to_verify(ranked, checked_top(ranked, verify_top, n_flagged), hotspots)
            if r.verification is None and r.view_hotspot is not None]
    if not todo:
        return
    ds = ray.data.from_items([{"path": r.path, "box": list(mask_box(r))} for r in todo],
                             override_num_blocks=max(1, min(len(todo) // 4, 1000)))
    ds = ds.map_batches(CheckWorker, batch_size=max(1, min(batch_size, 8)), compute=_actors(ray, shape),
                        num_cpus=shape["num_cpus"], num_gpus=shape["num_gpus"], max_restarts=RETRIES,
                        max_task_retries=RETRIES,
                        fn_constructor_kwargs={"model_path": model_path, "device": shape["device"],
                                               "threads": shape["threads"]})
    by_path = {r.path: r for r in todo}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for path, v in zip(batch["path"], batch["verification"]):
            by_path[str(path)].verification = json.loads(str(v))


def progress_printer(stream=sys.stderr) -> Callable[[int, int, float], None]:
    """The driver's progress line: done/total and images/s."""
    def show(done: int, total: int, rate: float) -> None:
        stream.write(f"\rcxrinspect: {done}/{total} images, {rate:.1f} images/s")
        stream.flush()
    return show
