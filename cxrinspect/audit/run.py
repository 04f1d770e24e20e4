"""A model audit: is this checkpoint backdoored, on which label, with what trigger? Clean images only.

    clean images -> [0, 1] model views, once -> the model's own predictions -> split (optimise | held out)
    -> a candidate per (label, direction) -> the stamp sweep (forward-only squares, :mod:`.sweep`)
    -> Neural Cleanse inversions scheduled K-Arm style -> the sweep's square and the inversion's smallest mask
    stamped into the held-out images (attack success): the smallest that holds there is the candidate's
    trigger -> anomaly index and verdict
    -> audit.json, audit.html, trigger.json in the output folder

Scheduling: candidates take turns, :data:`ROUND` steps at a time, the one with the fewest steps first, and
stop early as K-Arm (Shen et al. 2021) stops hopeless arms: when the mask is small and succeeds (converged),
when after :data:`JUDGE` steps it is far larger than the best arm's (hopeless), or at its own step limit. The
steps the stopped arms leave go to the others, and the audit stops when the
budget of image passes (forward + backward) is spent. Every round's state is checkpointed atomically to
``audit-state.safetensors`` (tensors; settings and counters as JSON in its metadata; nothing pickled), so a
killed or cancelled audit resumes where it stopped: each step's mini-batch is drawn from a generator seeded by
(seed, arm, step), so the resumed run repeats exactly what the uninterrupted one would do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..model.preprocess import normalise
from .anomaly import partial, verdict as model_verdict, warp_line
from .inversion import (FAMILIES, GLOBAL_RESTARTS, GLOBAL_SCALE, GLOBAL_STEPS, SUCCESS, WARP_PATIENCE, WARP_RESTARTS,
                        WARP_STEPS, Candidate, GlobalInversion, PatchInversion, WarpInversion, mask_box, mask_core,
                        stamp_views)
from .sweep import IMAGES as SWEEP_IMAGES, Square, sweep as stamp_sweep

BUDGET = 2000
"""Image passes (one forward and one backward of one image) for all candidates together: 250 steps of 8 images.
With 2400 (300 steps) and the network in the default memory layout, the shipped clean model's audit with 200
images took 736 s on the 2-core CPU (its sweep 210 s of it), over the 10 minutes an auditor is promised
(bench/results/README.md, "Model audit"). The backdoored models' audits ended before step 250 (BadNets 160,
zoo-patch-moving 224, zoo-letter 248 steps), so the cut changes only how hard a clean model is tried."""
BATCH = 8
ROUND = 8
JUDGE = 72
"""Steps an arm gets before it can be judged hopeless. K-Arm's greedy choice (after 8 steps each, the arm with
the smallest objective got the next round) starved the true target of the shipped BadNets model: Viral:on
was still the initial veil (3500 pixels) when, after 48 steps, it was stopped as hopeless beside the easier
Pneumonia:on (370 pixels); alone, with one of two mini-batch streams tried, the same inversion shrank to a
250-pixel mask by step 75 and 60 by step 100 (bench/probes/audit_grid.py; :data:`MASK_CELL`)."""
MAX_STEPS = 150
"""Steps one candidate may take at most."""
CONVERGED_PIXELS = 60.0
"""An arm whose successful mask is at most this big (and that has had 2 rounds) is done."""
HOPELESS_RATIO = 8.0
"""After :data:`JUDGE` steps, an arm whose mask is this many times the best arm's (or that never reached the line
while another did) stops."""
MASK_CELL = 4
"""The mask lives on a grid of cells this many model-input pixels wide (56 x 56 at 224 px), upsampled
bilinearly: a 3 x 3 trigger still fits a cell or two, and a per-pixel mask's adversarial speckle cannot form.
Measured on the shipped BadNets model (bench/probes/audit_grid.py, Viral:on alone, 100 steps, one mini-batch
stream): on this grid the mask shrank to a 23-pixel patch forcing the label on 82% of held-out images, while a
per-pixel mask (112 grid) was still a 1000-pixel veil and a 28 grid 1600 pixels. It is not reliable: with
another mini-batch stream the same 56 grid was still a 1500-pixel veil after 100 steps, and the 23-pixel patch
was not the model's trigger (bench/probes/trigger_places.py: the true 3x3 square forces Viral on 100% of
images at its trained place and on at most 7% elsewhere)."""
MIN_IMAGES = 2
"""A candidate needs this many eligible clean images on each side of the split."""
STATE_FILE = "audit-state.safetensors"


class AuditError(Exception):
    """The audit cannot start or continue (no readable images, settings differ from the run to resume)."""


@dataclass
class AuditResult:
    doc: dict
    complete: bool
    seconds: float
    files: dict = field(default_factory=dict)
    arms: list = field(default_factory=list)
    views: np.ndarray | None = None
    paths: list = field(default_factory=list)

    @property
    def backdoored(self) -> bool:
        return bool(self.doc.get("backdoored"))


def read_views(paths: list[str], spec, cancelled=None) -> tuple[list[str], np.ndarray, list[dict]]:
    """[0, 1] model views of the readable images (the one preprocessing path) and the failures with reasons."""
    from ..inference.predictor import read
    from ..model.preprocess import model_view

    ok, views, errors = [], [], []
    for p in paths:
        if cancelled is not None and cancelled():
            break
        rg, why = read(p)
        if rg is None:
            errors.append({"path": p, "error": why})
            continue
        try:
            views.append(model_view(rg, spec))
            ok.append(p)
        except Exception as e:  # noqa: BLE001 - one bad image is recorded, the audit goes on
            errors.append({"path": p, "error": f"{p}: {e}"})
    s = spec.input_size
    return ok, (np.stack(views) if views else np.zeros((0, s, s), np.float32)), errors


def probabilities(network, views: np.ndarray | torch.Tensor, spec, batch: int = 32) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(views), batch):
            x = torch.as_tensor(views[i:i + batch])
            out.append(torch.sigmoid(network(normalise(x, spec))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(optimise, held out) image indices: a seeded permutation cut at ``1 - holdout``."""
    order = np.random.default_rng([seed, 0x5917]).permutation(n)
    cut = int(round(n * (1 - holdout)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def audit(paths: Iterable[str | os.PathLike], model, out_dir: str | os.PathLike | None = None, *,
          directions: tuple[str, ...] = ("on",), budget: int = BUDGET, batch_size: int = BATCH, holdout: float = 0.5,
          grid: int | None = None, global_steps: int = GLOBAL_STEPS, warp_steps: int = WARP_STEPS, seed: int = 0,
          resume: bool = False,
          search: bool = False,
          sweep: bool = True,
          progress: Callable[[int, int, dict], None] | None = None, cancelled: Callable[[], bool] | None = None,
          report: bool = True) -> AuditResult:
    """Audit ``model`` with the clean images in ``paths`` (files and folders). ``progress(done, total, info)``
    after every step of the sweep (``info["stage"]``) and of the inversions; ``cancelled()`` stops between
    steps, keeping the state (resume later). ``sweep``: run the stamp sweep (:mod:`.sweep`) first.
    ``global_steps``, ``warp_steps``: steps per run of the whole-image and the warp inversions (0: not run)."""
    from ..imaging import discover

    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    # channels-last convolutions (in place, as the Predictor does): a batch of 8 forwards 1.4x faster on the 2-core
    # CPU (shipped BadNets model: 10.1 -> 14.3 images/s; outputs equal to 1e-6); forward and backward of a random
    # DenseNet-121 measured unchanged (5.5 images/s either way)
    network = model.network.eval().to(memory_format=torch.channels_last)
    for p in network.parameters():
        p.requires_grad_(False)  # only the trigger's gradients: the weights' would cost a third more
    spec, labels = model.card.preprocessing, model.card.labels
    size = spec.input_size
    grid = grid or max(1, size // MASK_CELL)
    found = discover(list(paths))
    good, views, errors = read_views(sorted(found.images), spec, cancelled)
    errors = [{"path": p, "error": f"{p}: {why}"} for p, why in found.errors] + errors
    if len(good) < 2 * MIN_IMAGES:
        raise AuditError(f"too few readable images to audit ({len(good)}; {len(errors)} unreadable)")
    t0 = time.perf_counter()
    probs = probabilities(network, views, spec)
    forward_rate = len(views) / max(time.perf_counter() - t0, 1e-9)
    opt, test = split(len(good), holdout, seed)
    settings = {"model_sha256": model.card.weights_sha256, "images": hashlib.sha256("\n".join(good).encode()).hexdigest(),
                "directions": list(directions), "budget": budget, "batch_size": batch_size, "holdout": holdout,
                "grid": grid, "global_steps": global_steps, "warp_steps": warp_steps, "seed": seed, "sweep": sweep}
    candidates = [Candidate(lab, j, d) for d in directions for j, lab in enumerate(labels)]
    eligible = {c.name: c.eligible(probs) for c in candidates}
    arms: list[dict] = []
    for k, c in enumerate(candidates):
        e = eligible[c.name]
        o, t = opt[e[opt]], test[e[test]]
        arm = {"candidate": c, "k": k, "opt": o, "test": t, "inv": PatchInversion(c, size, grid),
               "active": len(o) >= MIN_IMAGES and len(t) >= MIN_IMAGES, "stop": None, "square": None}
        if not arm["active"]:
            arm["stop"] = f"too few eligible images ({len(o)} to optimise, {len(t)} held out)"
        arms.append(arm)
    out = Path(out_dir) if out_dir is not None else None
    state_path = out / STATE_FILE if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if state_path.exists() and not resume:
            raise AuditError(f"{out} already holds an audit; pass --resume to continue it or choose another --out")
        if resume and state_path.exists():
            _restore(state_path, settings, arms, size, grid)
    interrupted, sweep_seconds = False, 0.0
    if sweep and not any(a.get("swept") for a in arms):
        t1 = time.perf_counter()
        interrupted = not _sweep(network, spec, arms, views, probs, opt, progress, cancelled)
        sweep_seconds = time.perf_counter() - t1
        if state_path is not None and not interrupted:
            _save(state_path, settings, arms)
    max_total = max(1, budget // batch_size)
    total_steps = sum(a["inv"].steps for a in arms)  # 0, or where the resumed audit stopped
    x_all = torch.from_numpy(views)
    backward_time, backward_images = 0.0, 0

    def stop_requested():
        return cancelled is not None and cancelled()

    while not interrupted and total_steps < max_total and any(a["active"] for a in arms):
        arm = min((a for a in arms if a["active"]), key=lambda a: (a["inv"].steps, a["k"]))
        steps = ROUND - arm["inv"].steps % ROUND
        for _ in range(steps):
            if stop_requested():
                interrupted = True
                break
            inv = arm["inv"]
            pick = np.random.default_rng([seed, arm["k"], inv.steps]).choice(
                arm["opt"], min(batch_size, len(arm["opt"])), replace=False)
            t1 = time.perf_counter()
            info = inv.step(network, x_all[np.sort(pick)], spec)
            backward_time += time.perf_counter() - t1
            backward_images += len(pick)
            total_steps += 1
            if inv.steps >= MAX_STEPS:
                arm["active"], arm["stop"] = False, "step limit"
            if progress is not None:
                progress(total_steps, max_total, {"candidate": arm["candidate"].name, **info})
            if total_steps >= max_total or not arm["active"]:
                break
        if interrupted:
            break
        _stop_checks(arms)
        if state_path is not None:
            _save(state_path, settings, arms)
    global_seconds = 0.0
    if not interrupted and not stop_requested() and global_steps > 0:
        t1 = time.perf_counter()
        interrupted = not _whole_image(network, spec, arms, views, probs, global_steps, seed, batch_size, x_all,
                                       progress, stop_requested)
        global_seconds = time.perf_counter() - t1
    warp_seconds = 0.0
    if not interrupted and not stop_requested() and warp_steps > 0:
        t1 = time.perf_counter()
        interrupted = not _warp(network, spec, arms, views, probs, warp_steps, seed, batch_size, x_all, progress,
                                stop_requested)
        warp_seconds = time.perf_counter() - t1
    complete = not interrupted and not stop_requested()
    for a in arms:
        if a["active"] and complete:
            a["stop"] = "budget spent"
    doc = {"tool": "cxrinspect audit", "model": {"name": model.card.name, "weights_sha256": model.card.weights_sha256,
           "labels": labels, "declared_poisoned": model.card.poisoned,
           "declared_trigger": model.card.trigger.to_dict() if model.card.trigger else None,
           "declared_target": getattr(model.card, "target", None)},
           "settings": settings, "images": len(good), "optimised_on": len(opt), "held_out": len(test),
           "errors": errors, "complete": complete, "steps": total_steps, "step_budget": max_total,
           "image_passes": total_steps * batch_size}
    result = AuditResult(doc, complete, 0.0, arms=arms, views=views, paths=good)
    if complete:
        _cross_check(network, spec, arms, views, probs)
        rows = [_row(a) for a in arms]
        doc.update(model_verdict(rows))
        doc["candidates"] = rows
        doc["trigger"] = _trigger(rows)
        if search and doc["trigger"] is not None:
            doc["search"] = search_folder(good, views, _arm(arms, doc["trigger"]["candidate"]), doc["trigger"], model,
                                          progress, stop_requested)
    else:
        doc["candidates"] = [_row(a) for a in arms]
    seconds = time.perf_counter() - started
    doc["timing"] = {"seconds": round(seconds, 1), "forward_images_per_s": round(forward_rate, 2),
                     "forward_backward_images_per_s": round(backward_images / max(backward_time, 1e-9), 2),
                     "sweep_seconds": round(sweep_seconds, 1), "global_seconds": round(global_seconds, 1),
                     "warp_seconds": round(warp_seconds, 1),
                     "threads": torch.get_num_threads()}
    result.seconds = seconds
    if out is not None and report:
        from .report import write_report

        result.files = write_report(out, result, model)
    return result


def _sweep(network, spec, arms, views, probs, opt, progress, cancelled) -> bool:
    """The stamp sweep on the optimise images eligible for the most "on" candidates; a square it finds is
    tested on all the candidate's optimise images, and the smallest that forces the label on there is kept
    beside what the inversion will find; where none reaches :data:`SUCCESS`, the smallest that crosses the
    partial line (zoo-letter with 499 images: its white square on the letter forced Viral on 89% of all eligible
    films and was dropped). The inversion is not seeded with it: on zoo-letter a seeded inversion
    converged to masks that forced Viral on fewer held-out images (under 88%) than the square alone, while
    the unseeded one found a 55-pixel patch forcing 91% (bench/results/README.md, "Model audit"). False if
    cancelled."""
    on = [a for a in arms if a["candidate"].direction == "on" and a["active"]]
    if on:
        elig = np.stack([a["candidate"].eligible(probs) for a in arms], 1)  # (N, arms)
        pick = opt[np.argsort(-elig[opt][:, [a["k"] for a in on]].sum(1), kind="stable")[:SWEEP_IMAGES]]
        eligible = np.zeros((len(pick), probs.shape[1]), bool)
        for a in on:
            eligible[:, a["candidate"].index] = elig[pick, a["k"]]
        labels = [a["candidate"].index for a in on if eligible[:, a["candidate"].index].sum() >= MIN_IMAGES]
        report = None if progress is None else (lambda d, n: progress(d, n, {"stage": "stamp sweep"}))
        squares = stamp_sweep(network, views[pick], eligible, spec, labels, progress=report, cancelled=cancelled)
        if squares is None:
            return False
        for a in on:
            c = a["candidate"]

            def success(sq: Square) -> float:
                stamped = stamp_views(views[a["opt"]], sq.mask(spec.input_size), sq.pattern(spec.input_size))
                return float(c.succeeded(probabilities(network, stamped.numpy(), spec)[:, c.index]).mean())

            kept = keep_square([s for s in squares if s.label == c.index], success)
            if kept is not None:
                a["square"] = {**kept[0].to_dict(), "optimise_success": round(kept[1], 4)}
    for a in arms:
        a["swept"] = True
    return True


def keep_square(squares: list[Square], success: Callable[[Square], float]) -> tuple[Square, float] | None:
    """Of the sweep's squares for one candidate, the smallest whose ``success`` (on the optimise images) reaches
    :data:`SUCCESS`, else the smallest that crosses the partial line, else None; with its success. Squares are
    tried smallest first and the first that reaches the line ends the search."""
    fallback = None
    for sq in sorted(squares, key=lambda s: s.size):
        hit = success(sq)
        if hit >= SUCCESS:
            return sq, hit
        if fallback is None and partial(hit, float(sq.size ** 2)):
            fallback = (sq, hit)
    return fallback


def describe_progress(done: int, total: int, info: dict) -> str:
    """One line for a progress report: the sweep's lattices, the inversion's step, or the folder search's image."""
    if info.get("stage") == "stamp sweep":
        return f"stamp sweep: lattice {done} of {total}"
    if info.get("stage") == "folder search":
        return f"folder search: image {done} of {total}, {info['carrying']} carrying the trigger"
    if info.get("stage") in ("whole-image inversion", "warp inversion"):
        return f"{info['stage']}, {info['candidate']}: batch success {info['success']:.2f}"
    return f"{info['candidate']}: batch success {info['success']:.2f}, mask {info['l1']:.0f} px"


def _found(arm: dict) -> list[tuple[np.ndarray, np.ndarray, float | None, str]]:
    """The candidate's recovered triggers, (mask, pattern, L1 in pixels or None, "sweep" | "inversion"): the
    sweep's square if any, the inversion's smallest successful mask (or its current one)."""
    inv, sq, out = arm["inv"], arm.get("square"), []
    if sq is not None:
        s = Square.from_dict({k: sq[k] for k in ("label", "pattern_name", "top", "left", "size", "success")})
        out.append((s.mask(inv.size), s.pattern(inv.size), float(s.size ** 2), "sweep"))
    if inv.reached or inv.steps or sq is None:
        mask, pattern = inv.best()
        out.append((mask, pattern, inv.best_l1 if inv.reached else None, "inversion"))
    return out


def trigger_of(arm: dict) -> tuple[np.ndarray, np.ndarray, float | None, str]:
    """The candidate's trigger: the one the held-out cross-check chose, else the smallest found so far."""
    found = _found(arm)
    chosen = [f for f in found if f[3] == arm.get("chosen")]
    return chosen[0] if chosen else min(found, key=lambda f: math.inf if f[2] is None else f[2])


def _stop_checks(arms: list[dict]) -> None:
    """Converged, or hopeless beside the other arms' smallest trigger (an arm's own square does not make its
    inversion hopeless: on zoo-letter that stopped Viral's at a 155-pixel mask forcing 90%)."""
    sizes = [trigger_of(a)[2] for a in arms]
    for k, a in enumerate(arms):
        inv = a["inv"]
        if not a["active"]:
            continue
        others = [v for i, v in enumerate(sizes) if i != k and v is not None]
        best = min(others) if others else None
        if inv.reached and inv.best_l1 <= CONVERGED_PIXELS and inv.steps >= 2 * ROUND:
            a["active"], a["stop"] = False, "converged"
        elif best is not None and inv.steps >= JUDGE and inv.best_l1 > HOPELESS_RATIO * best:
            a["active"], a["stop"] = False, "hopeless"


def _arm(arms, name):
    return next(a for a in arms if a["candidate"].name == name)


def choose(tried: list[tuple]) -> tuple:
    """Of a candidate's recovered triggers tried on its held-out images, ``(success, L1 or None, source, ...)``,
    the smallest that holds on its own, as the verdict's mask lines read it (forcing the label on
    :data:`SUCCESS` of them, or tiny and forcing the partial line's share), else the one that forces most.
    The partial line counts here too: on zoo-letter the sweep's white 4 x 4 square on the letter's place forced
    Viral on 88% of held-out films and a 55-pixel patch elsewhere 92%; the square, the smaller, is the trigger."""
    holding = [t for t in tried if t[1] is not None and (t[0] >= SUCCESS or partial(t[0], t[1]))]
    return min(holding, key=lambda t: t[1]) if holding else max(tried, key=lambda t: t[0])


def _cross_check(network, spec, arms, views, probs) -> None:
    """Stamp each candidate's recovered triggers (the sweep's square, the inversion's smallest mask) into its
    held-out images; :func:`choose` picks the candidate's trigger; the attack success it reaches, the images it
    flips (for the report)."""
    for a in arms:
        c, inv = a["candidate"], a["inv"]
        a["heldout"] = None
        if len(a["test"]) == 0 or (inv.steps == 0 and a.get("square") is None):
            continue
        tried = []
        for mask, pattern, l1, source in _found(a):
            q = probabilities(network, stamp_views(views[a["test"]], mask, pattern).numpy(), spec)[:, c.index]
            tried.append((float(c.succeeded(q).mean()), l1, source, q))
        rate, _, a["chosen"], q = choose(tried)
        hit = c.succeeded(q)
        a["heldout"] = rate
        if a.get("square") is not None:
            a["square"]["heldout_success"] = round(next(t[0] for t in tried if t[2] == "sweep"), 4)
        a["flips"] = [(int(i), float(probs[i, c.index]), float(v)) for i, v, h in zip(a["test"], q, hit) if h][:4]


def calm(probs: np.ndarray) -> np.ndarray:
    """Per image: the model calls it negative for every label (a film it reads as normal)."""
    return (probs < 0.5).all(1)


def _calm_sides(arms, probs, key: str) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Per "on" candidate its CALM optimise and held-out images (:func:`calm`); a candidate with fewer than
    :data:`MIN_IMAGES` on a side is left out, ``arm[key]`` saying why."""
    quiet = calm(probs)
    todo = []
    for a in arms:
        if a["candidate"].direction != "on":
            continue
        o, t = a["opt"][quiet[a["opt"]]], a["test"][quiet[a["test"]]]
        if len(o) >= MIN_IMAGES and len(t) >= MIN_IMAGES:
            todo.append((a, o, t))
        else:
            a[key] = {"heldout_success": None, "held_out": int(len(t)),
                      "stop": f"too few calm images ({len(o)} to optimise, {len(t)} held out)"}
    return todo


def optimise(inv, network, spec, images: np.ndarray, x_all: torch.Tensor, steps: int, stream: tuple[int, int, int],
             batch_size: int, tick: Callable[[dict], None] | None = None, stop_requested=lambda: False,
             patience: int | None = None) -> str:
    """``steps`` steps of a universal inversion (:class:`GlobalInversion`, :class:`WarpInversion`), each on a
    mini-batch of ``images`` drawn by a generator seeded by ``stream`` with the step added to its last number (so a
    run repeats exactly). "stalled": no image of its mini-batches forced after ``patience`` steps; "cancelled";
    "done"."""
    seed, arm, base = stream
    for s in range(steps):
        if stop_requested():
            return "cancelled"
        if patience is not None and inv.steps >= patience and inv.hits == 0:
            return "stalled"
        pick = np.random.default_rng([seed, arm, base + s]).choice(images, min(batch_size, len(images)), replace=False)
        info = inv.step(network, x_all[np.sort(pick)], spec)
        if tick is not None:
            tick(info)
    return "done"


class _Steps:
    """A stage's progress: counts its optimisation steps and reports them under the stage's name."""

    def __init__(self, progress, stage: str, total: int):
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0

    def report(self, info: dict) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, {"stage": self.stage, **info})

    def of(self, candidate: str) -> Callable[[dict], None]:
        """The tick of one candidate's runs (:func:`optimise`'s ``tick``)."""
        def tick(info):
            self.done += 1
            self.report({"candidate": candidate, **info})
        return tick


def _whole_image(network, spec, arms, views, probs, steps, seed, batch_size, x_all, progress, stop_requested) -> bool:
    """The whole-image inversion (:class:`GlobalInversion`) of every "on" candidate, each family in turn,
    :data:`GLOBAL_RESTARTS` runs of ``steps`` mini-batches of its CALM optimise images (:func:`calm`: negative for
    every label). Each run's change is tried on the calm held-out images at its size (``heldout_success``, the runs'
    mean) and made :data:`GLOBAL_SCALE` times as large (``reduced_success``, the runs' mean: what the verdict's
    whole-image line reads), in the family that forces most at that size; the change of its best run and the
    held-out images that change flips go to the report. Calm films only, because
    the share over every film eligible for the label moved with the set's mix: a film already called bacterial
    pneumonia is one faint change from "viral", so with 499 test films (367 pneumonias) instead of 200 (68) two clean
    models crossed Viral's line and both SIG models fell under Bacterial's (bench/results/README.md, "Model audit",
    sixteenth session). ``eligible_success`` keeps the share over every eligible held-out image, for the record.
    A candidate with fewer than :data:`MIN_IMAGES` calm images on a side is not run (``global`` says why).
    False if cancelled (nothing of it is kept: it is rerun on resume)."""
    todo = _calm_sides(arms, probs, "global")
    ticks = _Steps(progress, "whole-image inversion", len(todo) * len(FAMILIES) * GLOBAL_RESTARTS * steps)
    for a, o, t in todo:
        c, best, judged = a["candidate"], None, np.isin(a["test"], t)
        for family in FAMILIES:
            runs = []
            for r in range(GLOBAL_RESTARTS):
                g = GlobalInversion(c, spec.input_size, family)
                if optimise(g, network, spec, o, x_all, steps, (seed, a["k"], 10_000 + 100_000 * r), batch_size,
                            ticks.of(c.name), stop_requested) == "cancelled":
                    return False
                with torch.no_grad():
                    runs.append((g, *(probabilities(network, g.apply(torch.from_numpy(views[i]), scale=f).numpy(),
                                                    spec)[:, c.index] for i, f in ((a["test"], 1.0), (t, GLOBAL_SCALE)))))
            hits = [c.succeeded(q) for _, q, _ in runs]
            shares = [float(h[judged].mean()) for h in hits]
            reduced = [float(c.succeeded(q).mean()) for _, _, q in runs]
            if best is None or np.mean(reduced) > np.mean(best["reduced"]):
                best = {"shares": shares, "reduced": reduced, "run": runs[int(np.argmax(reduced))], "family": family,
                        "eligible": float(np.mean([h.mean() for h in hits]))}
        g, q, _ = best["run"]
        a["global"] = {"reduced_success": round(float(np.mean(best["reduced"])), 4),
                       "reduced_restarts": [round(x, 4) for x in best["reduced"]], "scale": GLOBAL_SCALE,
                       "heldout_success": round(float(np.mean(best["shares"])), 4),
                       "restarts": [round(x, 4) for x in best["shares"]], "held_out": int(len(t)),
                       "eligible_success": round(best["eligible"], 4), "family": g.family, "epsilon": g.epsilon,
                       "steps": steps}
        a["global_delta"] = g.delta().detach().numpy()[0, 0]
        a["global_flips"] = [(int(i), float(v)) for i, v, h in zip(a["test"], q, judged) if h and c.succeeded(v)][:2]
    return True


def _warp(network, spec, arms, views, probs, steps, seed, batch_size, x_all, progress, stop_requested) -> bool:
    """The warp inversion (:class:`WarpInversion`) of every "on" candidate: up to :data:`WARP_RESTARTS` runs of
    ``steps`` mini-batches of its calm optimise images, each from its own random field, a run stopping
    after :data:`WARP_PATIENCE` steps that forced no image; each run's warp is tried on the calm held-out images.
    ``warp["heldout_success"]`` is the best run's share (what the verdict's warp line reads: a backdoor's valley
    is found by some starts, not all), and the runs stop once one reaches the label's line. A label without a warp
    line (:data:`.anomaly.WARP_LINES`) is not run. False if cancelled."""
    todo = []
    for a, o, t in _calm_sides(arms, probs, "warp"):
        if warp_line(a["candidate"].label) is None:
            a["warp"] = {"heldout_success": None, "held_out": int(len(t)), "stop": "not run: no warp line for the label"}
        else:
            todo.append((a, o, t))
    ticks = _Steps(progress, "warp inversion", len(todo) * WARP_RESTARTS * steps)
    for a, o, t in todo:
        c, runs, line, end = a["candidate"], [], warp_line(a["candidate"].label), ticks.done + WARP_RESTARTS * steps
        for r in range(WARP_RESTARTS):
            start = int(np.random.default_rng([seed, a["k"], 30_000 + r]).integers(2 ** 31))
            w = WarpInversion(c, spec.input_size, seed=start)
            status = optimise(w, network, spec, o, x_all, steps, (seed, a["k"], 20_000 + 100_000 * r),
                              batch_size, ticks.of(c.name), stop_requested,
                              patience=WARP_PATIENCE)
            if status == "cancelled":
                return False
            with torch.no_grad():
                q = probabilities(network, w.apply(torch.from_numpy(views[t])).numpy(), spec)[:, c.index]
            runs.append((float(c.succeeded(q).mean()), w, q, status))
            if line is not None and runs[-1][0] >= line:
                break
        share, w, q, _ = max(runs, key=lambda run: run[0])
        ticks.done = end  # the steps a stalled run or a run after the line did not take
        ticks.report({"candidate": c.name, "success": share})
        a["warp"] = {"heldout_success": round(share, 4), "restarts": [round(run[0], 4) for run in runs],
                     "stops": [run[3] for run in runs], "held_out": int(len(t)), "family": "warp",
                     "bound_px": w.bound, "grid": w.grid, "steps": steps}
        a["warp_field"] = w.field().detach().numpy()[0]
        a["warp_flips"] = [(int(i), float(v)) for i, v in zip(t, q) if c.succeeded(v)][:2]
    return True


def _trigger(rows: list[dict]) -> dict | None:
    """audit.json's ``trigger``: the smallest mask among the candidates flagged by a mask line; else, for a
    candidate flagged by the whole-image line, the whole-image change; else, for one flagged by the warp line, the
    warp (``box`` None, ``where`` global)."""
    masked = [r for r in rows if {"mask", "partial"} & set(r.get("flagged_by", []))]
    if masked:
        best = min(masked, key=lambda r: r["mask_l1"])
        return {"candidate": best["candidate"], "where": "box", "box": best["box"], "pixels": best["mask_pixels"],
                "mask_l1": best["mask_l1"], "heldout_success": best["heldout_success"], "found_by": best["source"]}
    whole = [r for r in rows if "whole image" in r.get("flagged_by", [])]
    if whole:
        r = max(whole, key=lambda r: r["global"]["reduced_success"])
        g = r["global"]
        return {"candidate": r["candidate"], "where": "global", "box": None, "pixels": None, "mask_l1": None,
                "heldout_success": g["heldout_success"], "reduced_success": g["reduced_success"], "scale": g["scale"],
                "found_by": "whole-image inversion", "family": g["family"], "epsilon": g["epsilon"]}
    warped = [r for r in rows if "warp" in r.get("flagged_by", [])]
    if not warped:
        return None
    r = max(warped, key=lambda r: r["warp"]["heldout_success"])
    w = r["warp"]
    return {"candidate": r["candidate"], "where": "global", "box": None, "pixels": None, "mask_l1": None,
            "heldout_success": w["heldout_success"], "found_by": "warp inversion", "family": "warp",
            "bound_px": w["bound_px"], "grid": w["grid"]}


def _row(a: dict) -> dict:
    c, inv = a["candidate"], a["inv"]
    mask, _, l1, source = trigger_of(a)
    box, pixels = mask_box(mask)
    return {"candidate": c.name, "label": c.label, "direction": c.direction, "steps": inv.steps, "stop": a["stop"],
            "reached": l1 is not None, "mask_l1": None if l1 is None else round(l1, 2), "source": source,
            "square": a.get("square"), "mask_pixels": pixels, "box": box, "cost": inv.cost,
            "heldout_success": None if a.get("heldout") is None else round(a["heldout"], 4),
            "eligible": {"optimise": int(len(a["opt"])), "held_out": int(len(a["test"]))},
            "global": a.get("global"), "warp": a.get("warp")}


NOT_SEARCHED = {
    "warp": "a recovered warp is not searched for: undoing zoo-warp's found neither of the two films its true warp "
            "forced in the bench's folder and listed three clean films; the recovered field is not the trigger's",
    "global": "a recovered whole-image change is not searched for: subtracting zoo-sig's found none of the 16 films "
              "its true sinusoid forced in the bench's folder; the recovered stripes are not the trigger"}
"""Why ``--search`` declines a trigger of the whole image (``search["skipped"]``; bench/results/README.md, "Model
audit", twentieth session)."""


def search_folder(paths, views, arm, trigger: dict, model, progress=None, stop_requested=lambda: False) -> dict:
    """Hand a recovered patch to the scanner's counterfactual check (:func:`.verification.verify_mask`): in every
    image of the folder, hide the mask and see whether the label it forces collapses from the side it forces it to,
    beside controls (the same mask moved elsewhere). Images that carry the trigger collapse; clean ones do not.
    Another label's collapse is not counted. A trigger of the whole image is declined (:data:`NOT_SEARCHED`).
    Cancelled, it says how many it checked (``complete`` false)."""
    from ..inference.predictor import Predictor
    from ..scan.verification import verify_mask

    if trigger["box"] is None:
        return {"checked": 0, "complete": False, "mask_pixels": None, "carrying": [],
                "skipped": NOT_SEARCHED["warp" if trigger.get("family") == "warp" else "global"]}
    target, hide = arm["candidate"], mask_core(trigger_of(arm)[0])
    predictor = Predictor(model, device="cpu", backend="torch")
    carrying, checked = [], 0
    for p, v in zip(paths, views):
        if stop_requested():
            break
        c = verify_mask(v, hide, model.card.preprocessing, predictor.probabilities, model.card.labels,
                        only=target.label)
        if c["collapsed"] and c["direction"] == target.direction:
            carrying.append({"path": p, "label": c["label"], "logit_drop": round(float(c["logit_drop"]), 2)})
        checked += 1
        if progress is not None:
            progress(checked, len(paths), {"stage": "folder search", "carrying": len(carrying)})
    return {"checked": checked, "complete": checked == len(paths), "mask_pixels": int(hide.sum()),
            "carrying": carrying}


def _save(path: Path, settings: dict, arms: list[dict]) -> None:
    from safetensors.torch import save_file

    tensors, meta = {}, []
    for a in arms:
        tensors.update(a["inv"].tensors(f"arm{a['k']}"))
        meta.append({"active": a["active"], "stop": a["stop"], "square": a.get("square"),
                     "swept": a.get("swept", False), **a["inv"].scalars()})
    state = {"settings": settings, "arms": meta}
    atomic.replace(path, lambda tmp: save_file(tensors, tmp, metadata={"cxrinspect.audit": json.dumps(state)}),
                   suffix=".safetensors")


def _restore(path: Path, settings: dict, arms: list[dict], size: int, grid: int) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        state = json.loads(f.metadata()["cxrinspect.audit"])
    if state["settings"] != settings:
        diff = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
        raise AuditError(f"cannot resume {path.parent}: its audit used other settings {diff}")
    tensors = load_file(str(path))
    for a, s in zip(arms, state["arms"]):
        a["inv"] = PatchInversion.restore(a["candidate"], size, grid, s, tensors, f"arm{a['k']}")
        a["active"], a["stop"], a["square"], a["swept"] = s["active"], s["stop"], s.get("square"), s.get("swept")
