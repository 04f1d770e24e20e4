"""The trigger scanner, in process: one saliency map per image, its compactness, a score.

    for record in Scanner(model).scan(paths, cancelled=...):   # one ScanRecord per path, in order
        ...

Each batch costs one forward and one backward per explained label (input-gradient saliency, the
pixel-resolution default; by default one label, the most probable) or the chosen saliency method's own
cost. Decoding runs ahead in threads.
Unreadable files become records with an error; the scan never stops for one. Nothing but small
numbers is kept per image, so memory stays flat over thousands of files. Ranking, recurring hotspots,
counterfactual checks and reports build on the records (:mod:`cxrinspect.scan.run`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ..inference.predictor import prefetch, read
from ..model.preprocess import model_view, normalise, to_source_box
from .compactness import SCORE, compactness

LABEL_CHOICES = ("top", "positive", "all")
"""``top`` (default): each image's most probable label, one backward. ``positive``: every label the model calls
positive (probability at or above the card's threshold, 0.5 without one; the top label when none is), the most
compact map counting: a backdoor forces its target labels positive, and the label it drives alone (a subtype,
say) can show it more sharply than one that lung findings also drive. It costs one backward per positive label
(about half the throughput on Kermany) and, measured on a checkerboard backdoor whose target tops Pneumonia,
gained little: see bench/results. ``all``: every label. Or a label name: always that label."""


@dataclass
class ScanRecord:
    """One image's outcome. Boxes are (top, left, bottom, right), half-open: ``hotspot`` in source pixels,
    ``view_hotspot`` in model-input pixels (``input_size`` square); None when the scan's method gives no
    place (``psc``, ``contrast`` or ``mirror`` alone). ``score`` is the scan method's own score (the gradient
    map's 3x3 window share by default); ``detectors`` holds each detector's outcome by name
    (:mod:`cxrinspect.scan.detectors`); ``suspicion`` is what the final ranking sorts by (the combined score of
    ``auto``, set once the whole folder is scanned)."""

    path: str
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    shape: tuple[int, int] | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    label: str = ""
    score: float = 0.0
    hotspot: tuple[int, int, int, int] | None = None
    view_hotspot: tuple[int, int, int, int] | None = None
    input_size: int = 0
    metrics: dict = field(default_factory=dict)
    rank: int | None = None
    verification: dict | None = None
    verdict: str = ""
    detectors: dict = field(default_factory=dict)
    suspicion: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def hotspot_centre(self) -> tuple[float, float] | None:
        """Centre of the hotspot as fractions (y, x) of the model view: comparable across image sizes."""
        if self.view_hotspot is None or not self.input_size:
            return None
        t, l, b, r = self.view_hotspot
        return ((t + b) / 2 / self.input_size, (l + r) / 2 / self.input_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("shape", "hotspot", "view_hotspot"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScanRecord":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("shape", "hotspot", "view_hotspot"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


class Scanner:
    """Scores images with the detectors of ``method`` (:data:`cxrinspect.scan.detectors.METHODS`).

    ``model``: a loaded :class:`cxrinspect.model.Model`. ``method``: a detector (``gradient``, the default:
    the gradient map's compactness; ``psc``; ``contrast``; ``mirror``; ``distill``), ``auto`` (gradient,
    scaled-parameter, contrast and mirror consistency on every image, masks distilled for candidates), or
    another saliency map whose compactness to measure (``cam``, ...: coarse CAM cannot see a 3x3 trigger).
    ``label``: the label whose map is explained: ``top``, ``positive``, ``all`` or a label name
    (:data:`LABEL_CHOICES`). ``options`` go to the saliency method (steps, samples...).
    """

    def __init__(self, model, method: str = "gradient", label: str = "top", batch_size: int | None = None,
                 device: str | None = None, workers: int | None = None, **options):
        import torch

        from .detectors import METHODS, detectors_of, saliency_of

        if method not in METHODS:
            raise ValueError(f"unknown scan method {method!r}; choose one of {', '.join(METHODS)}")
        if label not in LABEL_CHOICES and label not in model.labels:
            raise ValueError(f"--label must be top, positive, all or one of the model's labels "
                             f"({', '.join(model.labels)}), got {label!r}")
        if device is None:
            from ..inference.predictor import cuda_available

            device = "cuda" if cuda_available() else "cpu"
        if batch_size is None:  # a GPU needs larger batches to be kept busy; a CPU gains nothing from them
            batch_size = 32 if str(device).startswith("cuda") else 8
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model, self.card, self.labels = model, model.card, model.labels
        self.spec = model.card.preprocessing
        self.thresholds = np.array([model.card.thresholds.get(lab, 0.5) for lab in self.labels], np.float32)
        self.scan_method, self.label, self.batch_size, self.options = method, label, batch_size, options
        self.detectors = detectors_of(method)
        self.method = saliency_of(method) or "gradient"  # the saliency map of the gradient detector and thumbnails
        self.device = torch.device(device)
        # channels-last and frozen weights: the backward computes input gradients only (about 30% faster on CPU)
        self.network = model.network.eval().to(self.device, memory_format=torch.channels_last)
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.psc = None
        if "psc" in self.detectors:
            from .detectors.psc import ScaledConsistency

            if method == "auto" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in self.network.modules()):
                self.detectors = tuple(d for d in self.detectors if d != "psc")  # nothing to amplify
            else:
                self.psc = ScaledConsistency(self.network, self.thresholds)

    def calibrate(self, views: np.ndarray) -> None:
        """Calibrate the detectors that need a sample of the folder (``psc``) on [0, 1] model views (N, H, W);
        the scan calibrates on its first batch when this was not called."""
        if self.psc is not None and len(views):
            self.psc.calibrate(self._input(views))

    def _input(self, views: np.ndarray):
        import torch

        x = torch.from_numpy(normalise(np.ascontiguousarray(views, np.float32), self.spec)).to(self.device)
        return x.contiguous(memory_format=torch.channels_last)

    @property
    def settings(self) -> dict:
        """What a resumed scan must share with the scan it continues."""
        out = {"model": self.card.name, "weights_sha256": self.card.weights_sha256, "method": self.scan_method,
               "detectors": list(self.detectors),
               "label": self.label, "score": SCORE if "gradient" in self.detectors else self.scan_method,
               "options": dict(sorted(self.options.items()))}
        if self.psc is not None and self.psc.start is not None:
            out["psc_layers"] = self.psc.start
        return out

    # ------------------------------------------------------------ per batch
    def decode(self, path: str):
        """(model view, None, warnings, source shape) or (None, the reason naming the file, [], None)."""
        return decode(path, self.spec)

    def maps(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities (N, L), maps (N, H, W) over model-input pixels, explained label index (N,)) for
        [0, 1] model views (N, H, W)."""
        logits, maps, chosen = self.logit_maps(views)
        return _sigmoid(logits), maps, chosen

    def logit_maps(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`maps` with the logits (N, L) in place of the probabilities."""
        import torch

        from ..saliency import candidate_gradients, saliency
        from ..saliency.attribution import candidate_labels

        x = self._input(views)
        fixed = self.labels.index(self.label) if self.label in self.labels else None

        def pick(logits):
            return torch.full((len(logits),), fixed) if fixed is not None else logits.argmax(1)

        if fixed is not None or self.label == "top":
            return self._one_label(x, pick)
        # several labels per image: explain each, keep the most compact map
        if self.method == "gradient":
            logits, maps, labels = candidate_gradients(self.network, x, self._candidates)
        else:
            with torch.inference_mode():
                logits = self.network(x).float().cpu().numpy()
            labels = candidate_labels(self._candidates(logits), logits)
            maps = np.stack([saliency(self.network, x, torch.as_tensor(labels[:, k]), self.method, **self.options)
                             for k in range(labels.shape[1])], 1)
        scores = np.array([[compactness(m).score for m in row] for row in maps])
        best = scores.argmax(1)
        rows = np.arange(len(maps))
        return logits, maps[rows, best], labels[rows, best]

    def _candidates(self, logits) -> np.ndarray:
        """(N, L) bool: the labels to explain per image (``positive`` or ``all``)."""
        if self.label == "all":
            return np.ones(logits.shape, bool)
        wanted = _sigmoid(logits) >= self.thresholds
        wanted[np.arange(len(logits)), logits.argmax(1)] = True
        return wanted

    def _one_label(self, x, pick):
        import torch

        from ..saliency import logits_and_gradients, saliency

        if self.method == "gradient":
            return logits_and_gradients(self.network, x, pick)
        with torch.inference_mode():
            logits = self.network(x).float()
        labels = torch.as_tensor(pick(logits)).view(-1)
        maps = saliency(self.network, x, labels, self.method, **self.options)
        return logits.cpu().numpy(), maps, labels.cpu().numpy()

    # ------------------------------------------------------------ the scan
    def scan(self, paths: Iterable[str | os.PathLike], cancelled: Callable[[], bool] | None = None) -> Iterator[ScanRecord]:
        """One :class:`ScanRecord` per path, in input order; stops early (between batches) when
        ``cancelled()`` turns true.

        Three stages overlap: files are decoded ahead in threads; the model explains one batch while the
        previous batch's maps are measured (:func:`compactness`) in threads, which on a GPU is what keeps
        the device busy."""
        window = max(2 * self.batch_size, 2 * self.workers)
        yield from self.scan_decoded(prefetch(map(os.fspath, paths), self.decode, self.workers, window), cancelled)

    def scan_decoded(self, decoded: Iterable[tuple[str, tuple]], cancelled: Callable[[], bool] | None = None
                     ) -> Iterator[ScanRecord]:
        """The same as :meth:`scan` for files decoded elsewhere (the Ray backend decodes on CPU workers):
        ``decoded`` yields ``(path, decode(path))``, in input order."""
        batch: list[tuple[str, np.ndarray, list[str], tuple[int, int]]] = []
        queue: deque = deque()  # in input order: ScanRecords of unreadable files and measured batches (futures)

        def ready(keep: int) -> Iterator[ScanRecord]:
            """Yield from the queue's head, leaving at most ``keep`` batches being measured."""
            while queue and (not isinstance(queue[0], list) or sum(isinstance(q, list) for q in queue) > keep):
                item = queue.popleft()
                yield from ([f.result() for f in item] if isinstance(item, list) else [item])

        with ThreadPoolExecutor(self.workers, thread_name_prefix="measure") as pool:
            for path, (view, error, notes, shape) in decoded:
                if cancelled is not None and cancelled():
                    return
                if error is not None:
                    self._explain(batch, queue, pool)
                    queue.append(ScanRecord(path, error=error))
                else:
                    batch.append((path, view, notes, shape))
                    if len(batch) == self.batch_size:
                        self._explain(batch, queue, pool)
                yield from ready(keep=1)
            self._explain(batch, queue, pool)
            yield from ready(keep=0)

    def _explain(self, batch, queue: deque, pool) -> None:
        """Run the detectors on ``batch`` now and queue its measuring; empties ``batch``."""
        if not batch:
            return
        views = np.stack([v for _, v, _, _ in batch])
        found: dict[str, np.ndarray] = {}
        maps = chosen = None
        if "gradient" in self.detectors:
            logits, maps, chosen = self.logit_maps(views)
        else:
            logits = self.logits(views)
        probs = _sigmoid(logits)
        if self.psc is not None:
            if self.psc.start is None:
                self.calibrate(views)
            found["psc"] = self.psc.scores(self._input(views), probs)
        from .detectors.consistency import contrast_scores, mirror_scores

        for name, scores in (("contrast", contrast_scores), ("mirror", mirror_scores)):
            if name in self.detectors:
                found[name] = scores(self.logits, views, logits, self.thresholds)
        if "distill" in self.detectors:
            found["distill"] = self.distil(views)
        queue.append([pool.submit(self._record, path, notes, shape, probs[i],
                                  None if maps is None else maps[i], -1 if chosen is None else int(chosen[i]),
                                  {k: v[i] for k, v in found.items()})
                      for i, (path, _, notes, shape) in enumerate(batch)])
        batch.clear()

    def logits(self, views: np.ndarray) -> np.ndarray:
        """The network's logits (N, L) for [0, 1] model views (N, H, W)."""
        import torch

        with torch.inference_mode():
            return self.network(self._input(views)).float().cpu().numpy()

    def distil(self, views: np.ndarray) -> np.ndarray:
        """Distilled masks (N, H, W) in [0, 1] for [0, 1] model views (:mod:`cxrinspect.scan.detectors.distill`)."""
        import torch

        from .detectors.distill import distil

        def prepare(v):
            return normalise(v, self.spec).contiguous(memory_format=torch.channels_last)

        return distil(self.network, torch.from_numpy(np.ascontiguousarray(views, np.float32)).to(self.device), prepare)

    def _record(self, path: str, notes: list[str], shape, probs: np.ndarray, saliency: np.ndarray | None, chosen: int,
                found: dict) -> ScanRecord:
        from .detectors import GLOBAL
        from .detectors.distill import mask_evidence

        record = ScanRecord(path=path, warnings=list(notes), shape=tuple(shape),
                            probabilities={lab: round(float(p), 6) for lab, p in zip(self.labels, probs)},
                            input_size=self.spec.input_size)
        box = None
        if saliency is not None:
            c = compactness(saliency)
            box = c.window_box[3]
            record.label, record.score, record.metrics = self.labels[chosen], float(c.score), c.to_dict()
            record.detectors["gradient"] = {"score": round(float(c.score), 6), "box": list(box)}
        for name in GLOBAL:
            if name in found:
                record.detectors[name] = {"score": round(float(found[name]), 6)}
                if name == self.scan_method:
                    record.score = float(found[name])
        if "distill" in found:
            record.detectors["distill"] = mask_evidence(found["distill"])
            if saliency is None:
                record.score = record.detectors["distill"]["score"]
                box = tuple(record.detectors["distill"]["box"]) if record.detectors["distill"]["box"] else None
        if box is not None:
            record.view_hotspot = tuple(int(v) for v in box)
            record.hotspot = to_source_box(box, shape, self.spec)
        return record


def decode(path: str, spec):
    """One file as the scanner reads it: (model view, None, warnings, source shape), or (None, the reason naming
    the file, [], None) when it cannot be read."""
    rg, error = read(path)
    if rg is None:
        return None, error, [], None
    return model_view(rg, spec), None, rg.warnings, rg.shape


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(z, np.float64)).astype(np.float32)
