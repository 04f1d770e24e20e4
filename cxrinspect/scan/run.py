"""A scan of files and folders into an output folder: streamed, resumable, ranked, verified, reported.

    out/scan.json      the scan's settings (a resumed scan must match them)
    out/scan.jsonl     one JSON line per image as it is scanned (append-only; --resume continues it)
    out/ranking.csv    every image, most suspicious first: confirmed triggers, then by score
                       (path, score, rank, verdict, hotspot, counterfactual drop, metrics)
    out/report.json    summary, recurring hotspots, verified candidates, errors
    out/report.html    the same for people: one self-contained page

A line is written (and flushed) per image, so a scan killed at any moment keeps every finished image;
``resume`` skips exactly those and drops a torn last line, so no row is lost or duplicated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from .. import atomic
from .hotspots import RADIUS, recurring
from .scanner import ScanRecord, Scanner

SUSPICIOUS = 0.02
"""Score (share of the saliency mass in the best 3x3 window) above which an image is flagged. A map
spread over the lungs at 224 px puts well under 1% of its mass in any 3x3 window; measured values are
in the scan issue's note."""
VERIFY_TOP = 20
"""The counterfactual check looks at least at this many of the best-scored images ..."""
VERIFY_SHARE = 0.1
"""... and at least at this share of the folder's readable images (a trigger that moves gathers at no place, so
only rank brings its images to the check: on zoo-tag-moving's 10% folder, 17 of the top 20 by suspicion were
triggered images and 35 of the top 50) ..."""
VERIFY_MAX = 500
"""... and at most at this many in all (each costs six forward passes, twelve where the grown square follows the
box: :func:`..verification.verify_box`)."""
NEAR = 2 * RADIUS
"""An image's hotspot this close to a recurring hotspot (fraction of the side, about 13 px at 224) is at
that place and gets checked. Twice the clustering radius: a place's centre is the mean of its members."""


class ScanError(Exception):
    """The scan cannot start or continue (output folder in use, settings differ, nothing to scan)."""


@dataclass
class ScanResult:
    records: list[ScanRecord]
    ranked: list[ScanRecord]
    hotspots: list[dict]
    errors: list[ScanRecord]
    settings: dict
    complete: bool = True
    seconds: float = 0.0
    files: dict = field(default_factory=dict)
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    verdict: dict = field(default_factory=dict)


def rank(records: Iterable[ScanRecord]) -> list[ScanRecord]:
    """The readable records, most suspicious first, with ``rank`` set from 1: images the counterfactual
    check confirmed (verdict ``trigger``) first, then by suspicion (the combined score; the method's own
    score before it is set), ties by path. Before the check (no verdicts yet) this is the score order."""
    ranked = sorted((r for r in records if r.ok),
                    key=lambda r: (r.verdict != "trigger", -(r.suspicion if r.suspicion is not None else r.score), r.path))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    return ranked


def read_journal(path: Path) -> list[ScanRecord]:
    """The records of a scan.jsonl; a torn last line (a kill mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return [ScanRecord.from_dict(json.loads(line)) for line in data[:end].decode().splitlines() if line.strip()]


def scan(paths: Iterable[str | os.PathLike], model, out_dir: str | os.PathLike | None = None, *,
         method: str = "gradient", label: str = "top", batch_size: int | None = None, device: str | None = None,
         resume: bool = False, verify_top: int = VERIFY_TOP, threshold: float = SUSPICIOUS,
         progress: Callable[[int, int, ScanRecord], None] | None = None,
         cancelled: Callable[[], bool] | None = None, report: bool = True, **options) -> ScanResult:
    """Scan ``paths`` (files and folders) with ``model``; with ``out_dir``, stream and report there.

    ``progress(done, total, record)`` is called after every image (the GUI's and the CLI's progress bar);
    ``cancelled()`` stops between batches, keeping what is done (resume later). Verification, recurring
    hotspots and reports follow a complete scan (and a cancelled one, over what it did).
    """
    from ..imaging import discover

    started = time.perf_counter()
    scanner = Scanner(model, method=method, label=label, batch_size=batch_size, device=device, **options)
    found = discover(list(paths))
    if scanner.psc is not None:  # before the settings: a resumed scan must be calibrated the same
        scanner.calibrate(calibration_sample(found.images, scanner))
    settings = scanner.settings
    out = Path(out_dir) if out_dir is not None else None
    done: list[ScanRecord] = []
    journal = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta, journal = out / "scan.json", out / "scan.jsonl"
        if journal.exists() and not resume:
            raise ScanError(f"{out} already holds a scan; pass --resume to continue it or choose another --out")
        record_settings(meta, settings, resume)
        done = read_journal(journal) if resume else []
    seen = {os.path.abspath(r.path) for r in done}  # the folder named relative now and absolute before, or back
    failed = [ScanRecord(p, error=f"{p}: {why}") for p, why in found.errors if os.path.abspath(p) not in seen]
    todo = [p for p in found.images if os.path.abspath(p) not in seen]
    if not found.images and not found.errors and not done:
        raise ScanError("no image files found in " + ", ".join(map(str, paths)))
    total = len(done) + len(failed) + len(todo)
    records = list(done)
    sink = open(journal, "a", encoding="utf-8") if journal is not None else None
    try:
        for record in chain(failed, scanner.scan(todo, cancelled)):  # lazily: each line as it is made
            records.append(record)
            if sink is not None:
                sink.write(json.dumps(record.to_dict()) + "\n")
                sink.flush()
            if progress is not None:
                progress(len(records), total, record)
    finally:
        if sink is not None:
            sink.close()
    complete = len(records) == total
    ranked = rank(records)
    result = ScanResult(records, ranked, [], [r for r in records if not r.ok], settings, complete)
    if not (cancelled is not None and cancelled()):
        finish(result, scanner, verify_top=verify_top, threshold=threshold)
    result.seconds = time.perf_counter() - started
    if out is not None and report:
        from .report import write_report

        result.files = write_report(out, result, model.card, threshold=threshold)
    return result


CALIBRATION = 32
"""Images (spread over the folder) on which detectors that need a sample of it are calibrated."""


def record_settings(meta: Path, settings: dict, resume: bool) -> None:
    """Write the scan's settings to ``meta`` (scan.json); a resumed scan must have been made with the same."""
    if resume and meta.exists():
        before = json.loads(meta.read_text())
        if before != settings:
            diff = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            raise ScanError(f"cannot resume {meta.parent}: its scan used other settings {diff}")
    atomic.write_text(meta, json.dumps(settings, indent=1))


def calibration_sample(paths: list[str], scanner: Scanner, n: int = CALIBRATION) -> np.ndarray:
    """[0, 1] model views of up to ``n`` readable images spread evenly over ``paths`` (the same ones for a
    resumed scan of the same folder)."""
    from ..inference.predictor import read
    from ..model.preprocess import model_view

    views = []
    for i in np.unique(np.linspace(0, len(paths) - 1, min(len(paths), 2 * n)).astype(int)) if paths else []:
        rg, _ = read(paths[i])
        if rg is not None:
            views.append(model_view(rg, scanner.spec))
        if len(views) == n:
            break
    return np.stack(views) if views else np.zeros((0, scanner.spec.input_size, scanner.spec.input_size), np.float32)


def place_of(record: ScanRecord, hotspots: list[dict], near: float = NEAR) -> int | None:
    """Index of the recurring hotspot nearest to ``record``'s hotspot, if within ``near`` (fraction of the side)."""
    c = record.hotspot_centre
    if c is None or not hotspots:
        return None
    d = [np.hypot(h["centre"][0] - c[0], h["centre"][1] - c[1]) for h in hotspots]
    i = int(np.argmin(d))
    return i if d[i] <= near else None


def at_confirmed(ranked: list[ScanRecord], listed: list[ScanRecord], near: float = NEAR) -> list[ScanRecord]:
    """The images not yet ``listed`` for the check whose hotspot lies within ``near`` of the hotspot of an image
    the check confirmed, in ranking order, up to :data:`VERIFY_MAX` checked in all. A trigger that forces few
    images of a folder leaves no recurring hotspot among the top ranks, and its images can rank just below
    the share checked (zoo-electrode at 1%: 4 of its 5 triggered images ranked 52nd to 259th of 499, each hotspot
    on the electrode; the one checked was confirmed): once one is confirmed, its place is where the others are sought."""
    found = [{"centre": r.hotspot_centre} for r in listed
             if (r.verification or {}).get("collapsed") and r.hotspot_centre is not None]
    if not found:
        return []
    seen = {id(r) for r in listed}
    more = [r for r in ranked if id(r) not in seen and place_of(r, found, near) is not None]
    return more[:max(0, VERIFY_MAX - len(listed))]


def checked_place(record: ScanRecord, hotspots: list[dict]) -> int | None:
    """The recurring hotspot the check hid in ``record`` (evidence ``place``), none where it hid no region (a whole-
    image trigger: evidence ``global`` or ``pattern``), else its hotspot's (:func:`place_of`)."""
    v = record.verification or {}
    if v.get("evidence") in ("global", "pattern"):
        return None
    return v["place"] if v.get("evidence") == "place" else place_of(record, hotspots)


def mask_box(record: ScanRecord) -> tuple[int, int, int, int]:
    """The model-pixel box the counterfactual check hides: the hotspot (the best 3x3 window) joined with the
    best 5x5 window when the two overlap, then with the gradient map's hot component (its largest connected
    region at half its peak) when that overlaps them and is at most :data:`COMPONENT_SIDE` pixels a side.
    A trigger larger than 3x3 then goes whole even when the 3x3 window sits on its corner (measured on a 5x5
    trigger: 4 of 50 triggered images kept their prediction when only the 3x3 window, grown by 2 px, was
    hidden; with the 5x5 window joined, every one collapsed), and a longer mark goes whole where the map lights
    it along its length (on zoo-tag-moving's 5 x 16 tag it did not: the component was 1 to 5 px a side and
    widened the box by at most 3 px, bench/results/README.md). The controls hide the same box elsewhere, so a
    larger box on a clean image is weighed against boxes as large."""
    box = tuple(record.view_hotspot)
    for key, side in (("window_box_5", None), ("component_box", COMPONENT_SIDE)):
        other = record.metrics.get(key)
        if not other:
            continue
        t, l, b, r = box
        t2, l2, b2, r2 = other
        if t2 >= b or t >= b2 or l2 >= r or l >= r2:  # apart: that mass is elsewhere
            continue
        if side is not None and max(b2 - t2, r2 - l2) > side:
            continue
        box = min(t, t2), min(l, l2), max(b, b2), max(r, r2)
    return box


COMPONENT_SIDE = 20
"""The hot component joins the hidden box only up to this many model pixels a side (9% of 224): a pasted mark,
not a lobe."""


def checked_top(ranked: list[ScanRecord], verify_top: int, n_flagged: int) -> int:
    """How many of the best-ranked images the check takes: every flagged one, at least ``verify_top`` and at least
    :data:`VERIFY_SHARE` of the folder."""
    return max(verify_top, n_flagged, int(np.ceil(VERIFY_SHARE * len(ranked))))


def to_verify(ranked: list[ScanRecord], top_k: int, hotspots: list[dict], near: float = NEAR) -> list[ScanRecord]:
    """The images the counterfactual check looks at, in ranking order: the ``top_k`` first and every
    image whose hotspot lies within ``near`` of a recurring hotspot, at most :data:`VERIFY_MAX`. A trigger
    fires wherever it is pasted but not always with a compact map: the images it drove less sharply can
    score below clean images with a real focal finding, yet their hotspot still sits on the trigger, and
    masking it still collapses the prediction (measured in the scan issue)."""
    return [r for i, r in enumerate(ranked) if i < top_k or place_of(r, hotspots, near) is not None][:VERIFY_MAX]


def robust_z(scores) -> np.ndarray:
    """``(score - median) / (1.4826 MAD)`` over the finite scores (NaN where a score is missing)."""
    s = np.asarray(scores, np.float64)
    z = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.any():
        med = np.median(s[ok])
        z[ok] = (s[ok] - med) / max(1.4826 * np.median(np.abs(s[ok] - med)), 1e-6)
    return z


def combine(ranked: list[ScanRecord], detectors: tuple[str, ...]) -> None:
    """Each detector's robust z-score over the folder (``(score - median) / (1.4826 MAD)``), kept as the
    detector's ``z``; each record's ``suspicion``: with one detector its score, with several their z-scores
    combined as Stouffer's method does (their sum over the square root of their number: most of a folder is
    clean, and a triggered image that stands out on both detectors outranks one that a single detector's tail
    lifts). Measured on the zoo's moving triggers (bench/results/README.md, "The zoo"): the larger of the two
    z-scores, the rule before, ranked the forced images of zoo-patch-moving's 10% folder at AUROC 0.993 /
    precision 0.84 and zoo-tag-moving's at 0.978 / 0.68; their sum, on the same scores and checks, 0.996 / 0.90
    and 0.980 / 0.74, and in a scan of its own (which also checks what it ranks higher) 0.996 / 0.94 and
    0.981 / 0.79."""
    z = np.full((len(ranked), len(detectors)), np.nan)
    for j, name in enumerate(detectors):
        s = np.array([r.detectors.get(name, {}).get("score", np.nan) for r in ranked], np.float64)
        if np.isfinite(s).sum() < 2:
            continue
        z[:, j] = robust_z(s)
        for r, v in zip(ranked, z[:, j]):
            if np.isfinite(v):
                r.detectors[name]["z"] = round(float(v), 3)
    for r, row in zip(ranked, z):
        have = row[np.isfinite(row)]
        stouffer = have.sum() / np.sqrt(len(have)) if len(have) else None
        r.suspicion = r.score if len(detectors) < 2 or stouffer is None else round(float(stouffer), 4)


def flagged(record: ScanRecord, threshold: float = SUSPICIOUS) -> bool:
    """Over a detector's own line: the gradient map's 3x3 share >= ``threshold``, or a distilled mask keeping at
    most :data:`DISTILL_FLAG` of the image. Scaled-parameter consistency ranks but never flags: on clean folders
    its scores have a second mode, about a quarter of the films, confident ones whose every decision survives the
    amplification, so neither a fixed line nor an outlier line of the folder separates a triggered image
    from them (measured with bench/probes/psc_flag.py on 499 clean held-out images: the weakest-label margin's
    robust z reaches 4.8 on the shipped clean model with 121 images at 4 or more, and 7.3 on zoo-clean-ft1 with
    112 at 6 or more; the paper's probability line, 0.9, flagged 25% of clean images under every clean model)."""
    d = record.detectors
    if "gradient" in d or not d:
        if record.score >= threshold:
            return True
    return d.get("distill", {}).get("kept", 1.0) <= DISTILL_FLAG


DISTILL_FLAG = 0.002
"""A distilled mask keeping at most this share of the pixels (100 of 224 x 224) flags an image."""
DISTIL_TOP = 10
"""Masks are distilled (40 forward and backward passes each) for at most this many candidates per scan, the
most suspicious whose hotspot did not collapse the prediction."""
MASK_MAX = 0.25
"""The check hides a distilled mask only when it keeps at most this share of the image."""
PLACE_LEAST = 2
"""A recurring hotspot is a trigger's place once hiding it has collapsed the prediction of this many images."""


def trigger_places(ranked: list[ScanRecord], hotspots: list[dict], least: int = PLACE_LEAST) -> dict[int, tuple]:
    """{recurring hotspot index: box} where the check has shown a trigger to sit: the places at which at least
    ``least`` images collapsed when their hotspot was hidden, each with the median of the boxes hidden there. A
    trigger at a fixed place forces images whose gradient map peaks elsewhere (zoo-normal's square: 23 of its 50
    triggered test images), so the check hides the place in every unconfirmed candidate too."""
    boxes: dict[int, list] = {}
    for r in ranked:
        v = r.verification or {}
        if v.get("collapsed") and v.get("evidence") == "box" and (i := place_of(r, hotspots)) is not None:
            boxes.setdefault(i, []).append(v["masked_box"])
    return {i: tuple(int(x) for x in np.median(np.array(b), axis=0)) for i, b in boxes.items() if len(b) >= least}


SHARED_METHODS = ("auto", "contrast", "mirror")
"""The methods whose ranking brings a trigger of the whole image to the top (the consistency tests), after which
the transplant test (:func:`shared_pattern`) runs."""


def shared_pattern(ranked: list[ScanRecord], still: list[tuple], view_of, scanner: Scanner, predictor) -> dict:
    """The transplant test (:mod:`.transplant`) of the best-ranked unconfirmed candidates ``still`` (``(record,
    view)`` pairs, most suspicious first) against calm films spread over the folder's least suspicious half; when
    it is established, the shared pattern is taken out of every candidate (:func:`..verification.verify_pattern`)
    and an image that loses a label the pattern forces on (or gets back one it forces off) is confirmed (evidence
    ``pattern``). Returns the test's
    figures (``skipped`` with the reason where the folder is too small)."""
    from .transplant import CALM_MAX, TOP, transplant
    from .verification import verify_pattern

    calm_records = ranked[len(ranked) // 2:]
    if len(still) < TOP or len(calm_records) < 2 * TOP:
        return {"established": False, "labels": [], "skipped": f"{len(still)} unconfirmed candidates and "
                f"{len(calm_records)} calm films; the test needs {TOP} and {2 * TOP}"}
    pick = np.unique(np.linspace(0, len(calm_records) - 1, min(len(calm_records), CALM_MAX)).astype(int))
    calm = [v for v in (view_of(calm_records[i])[0] for i in pick) if v is not None]
    found = transplant(np.stack([v for _, v in still[:TOP]]), np.stack(calm), scanner.logits, scanner.labels,
                       scanner.thresholds)
    pattern, controls = found.pop("pattern", None), found.pop("controls", None)
    if found["established"]:
        for r, view in still:
            check = verify_pattern(view, pattern, controls, scanner.spec, predictor.probabilities, scanner.labels)
            pushed = found["labels"] if check["direction"] == "on" else found["forced_off"]
            if check["collapsed"] and check["label"] in pushed:
                r.verification = check
    return found


def finish(result: ScanResult, scanner: Scanner, verify_top: int = VERIFY_TOP, threshold: float = SUSPICIOUS) -> None:
    """The combined ranking (:func:`combine`); recurring hotspots among the top ranks; the counterfactual check
    of the top candidates (:func:`checked_top`) and of every image whose hotspot sits
    at a recurring place (:func:`to_verify`), then of every image whose hotspot sits where the check confirmed
    one (:func:`at_confirmed`): first the hotspot is hidden, then, where that did not collapse the
    prediction, each place where the check has shown a trigger to sit (:func:`trigger_places`), then, where the
    method distils masks, the distilled mask of the :data:`DISTIL_TOP` most suspicious; verdicts;
    the folder's verdict; the final ranking (confirmed triggers first); the gallery's thumbnails."""
    from ..imaging import load
    from ..inference.predictor import Predictor
    from ..model.preprocess import model_view
    from .detectors.distill import kept, mask_evidence
    from .report import GALLERY, thumbnail
    from .verdict import folder_verdict
    from .verification import verify_box, verify_mask

    def view_of(r: ScanRecord):
        """(model view, None), or (None, why) when the file changed or vanished since it was scanned."""
        try:
            return model_view(load(r.path), scanner.spec), None
        except Exception as e:
            return None, f"{r.path}: {e}"

    def fetched(pairs):
        """``(record, view)`` pairs with the views the Ray actors left out decoded; a file that fails now is
        recorded as the check's error and dropped."""
        out = []
        for r, view in pairs:
            if view is None:
                view, error = view_of(r)
                if error:
                    r.verification = {"error": error}
                    continue
            out.append((r, view))
        return out

    combine(result.ranked, scanner.detectors)
    ranked = result.ranked = rank(result.records)
    n_flagged = sum(flagged(r, threshold) for r in ranked)
    # where do the flagged images' hotspots gather (the top verify_top when too few are flagged)
    result.hotspots = recurring(ranked, top_k=n_flagged if n_flagged >= 3 else min(verify_top, len(ranked)))
    predictor = Predictor(scanner.model, device=str(scanner.device), backend="torch")
    distils = scanner.scan_method in ("auto", "distill")
    views, confirmed = {}, 0  # checked views that can reach the gallery (at most 2 x GALLERY)
    unconfirmed = []  # (record, view) whose hotspot did not collapse the prediction, most suspicious first

    def check_candidate(i: int, r: ScanRecord) -> None:
        nonlocal confirmed
        done = r.verification  # checked already (by the Ray actors): kept; its view fetched only if a later check
        if done is not None:   # (a trigger place, a distilled mask) needs it
            if not (done.get("collapsed") or "error" in done):
                unconfirmed.append((r, None))
            return
        view, error = view_of(r)
        if error:
            r.verification = {"error": error}
            return
        if r.view_hotspot is not None:
            r.verification = verify_box(view, mask_box(r), scanner.spec, predictor.probabilities, scanner.labels)
        else:  # nothing placed yet: a trigger of the whole image, unless a distilled mask finds a place
            r.verification = {"collapsed": False, "evidence": "global"}
        confirmed += r.verification["collapsed"]
        if not r.verification["collapsed"]:
            unconfirmed.append((r, view))
        if i < GALLERY or (r.verification["collapsed"] and confirmed <= GALLERY):
            views[r.path] = view

    listed = to_verify(ranked, checked_top(ranked, verify_top, n_flagged), result.hotspots)
    for i, r in enumerate(listed):
        check_candidate(i, r)
    for i, r in enumerate(at_confirmed(ranked, listed), start=len(listed)):
        check_candidate(i, r)
    if places := trigger_places(ranked, result.hotspots):  # hide the trigger's place in the other candidates
        still = []
        for r, view in fetched(unconfirmed):
            for at, box in places.items():
                check = verify_box(view, box, scanner.spec, predictor.probabilities, scanner.labels)
                if check["collapsed"]:
                    r.verification = dict(check, evidence="place", place=at)
                    break
            else:
                still.append((r, view))
        unconfirmed = still
    if distils:  # distil masks for the most suspicious unconfirmed candidates, a batch at a time
        todo = fetched(unconfirmed[:DISTIL_TOP])
        for s in range(0, len(todo), scanner.batch_size):
            chunk = todo[s:s + scanner.batch_size]
            for (r, view), mask in zip(chunk, scanner.distil(np.stack([v for _, v in chunk]))):
                r.detectors["distill"] = mask_evidence(mask)
                hide = kept(mask)
                if 0 < hide.mean() <= MASK_MAX:
                    check = dict(verify_mask(view, hide, scanner.spec, predictor.probabilities, scanner.labels),
                                 evidence="mask")
                    if check["collapsed"] or r.verification.get("evidence") == "global":
                        r.verification = check
    shared = None
    if scanner.scan_method in SHARED_METHODS:  # a trigger of the whole image: the transplant test
        still = fetched([(r, v) for r, v in unconfirmed if not r.verification.get("collapsed")])
        shared = shared_pattern(ranked, still, view_of, scanner, predictor)
    for r in ranked:
        v = r.verification or {}
        r.verdict = "trigger" if v.get("collapsed") else "suspicious" if flagged(r, threshold) else "clean"
    for h in result.hotspots:
        h["verified"] = h["collapsed"] = 0
    for r in ranked:  # each checked image counts once, at the place hidden or its hotspot's nearest
        if (i := checked_place(r, result.hotspots)) is not None and r.verification and "error" not in r.verification:
            result.hotspots[i]["verified"] += 1
            result.hotspots[i]["collapsed"] += r.verdict == "trigger"
    result.ranked = rank(result.records)
    result.verdict = folder_verdict(result.ranked, result.hotspots, shared)
    if "gradient" not in scanner.detectors:
        return
    for r in result.ranked[:GALLERY]:
        if r.view_hotspot is not None and (view := views[r.path] if r.path in views else view_of(r)[0]) is not None:
            _, maps, _ = scanner.maps(view[None])
            result.thumbnails[r.path] = thumbnail(view, maps[0], r.view_hotspot, f"{scanner.method}\n{r.label}")
