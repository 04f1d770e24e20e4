"""The transplant test: a trigger of the whole image, proven on the folder's own films.

A sinusoid or a blended pattern leaves nothing to hide, so the per-image check (hide the hotspot, the place, the
mask) never confirms one. But it is one pattern in every image it was pasted into. The mean of the best-ranked
images the check did not confirm (the candidates), minus the mean of the folder's calm half, keeps it, scaled by
the share of triggered images among the candidates, while their anatomy averages out. Added to the calm films, it
forces on the label the backdoor forces. The candidates' mean also differs from the folder's by what their
labels look like, so the control is the same difference for calm films whose logits match the candidates' (the
nearest, each used once): what their labels look like, without a shared pattern.

The folder's verdict (:mod:`.verdict`) then rests on the model's behaviour twice over: the pattern forces the
label on calm films far more often than the control's does, and taking it out of the candidates loses that label
(the counterfactual of the per-image check, with the pattern as what is hidden). A backdoor can force a label off
(a finding hidden) as well as on; the test is the mirror for it: the pattern turns the label off on calm films
positive for it, and taking it out brings the label back.

Measured on zoo-sig's 10% folder (confirmed: 24 triggered films, both targets named, no clean film) and on two clean
models' scans of 499 clean films (not established): bench/results/README.md, "The transplant test".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .verification import MIN_LOGIT_DROP

TOP = 20
"""Candidates: the best-ranked images the per-image check did not confirm."""
CALM_MAX = 256
"""At most this many calm films (spread over the folder's least suspicious half) receive the pattern."""
LEAST = 0.2
"""The pattern must force the label on at least this share of the calm films negative for it (or off, of those
positive for it) ..."""
EXCESS = 3.0
"""... and at least this many times the share the control's difference forces (with one film added to both, so
a control that forces none does not make any share infinitely larger)."""
TAKE_OUT = 2.0
"""The pattern is taken out of an image at this multiple: the candidates' mean carries the trigger scaled by the
share of them that carry it (about half, on zoo-sig's 10% folder: 10 of the 20), so taking out the mean once
leaves half a trigger, which still fires (the hand-built backdoor of the tests: no triggered film lost its label
at 1x, all at 2x). The controls are taken out at the same multiple."""
CONTROLS = 2
"""Differences taken out of an image as controls when the pattern is: as many groups of calm films, each read as the
candidates are read (their nearest logits). Random calm groups were the controls at first: their difference carries
no label's look, so taking it out moved nothing, and 12 clean films of zoo-sig's 10% folder lost Pneumonia beyond
them when the candidates' pattern (Pneumonia's look as well as the sinusoid) was taken out. With matched groups the
same scan confirmed 24 triggered films and no clean one (bench/results/README.md, "The transplant test")."""


def logits_of(forward: Callable[[np.ndarray], np.ndarray], views: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([forward(np.clip(views[s:s + batch], 0, 1)) for s in range(0, len(views), batch)]) \
        if len(views) else np.zeros((0, 0), np.float32)


def forced_share(forward, calm: np.ndarray, calm_logits: np.ndarray, cut: np.ndarray, pattern: np.ndarray):
    """Per label, when ``pattern`` is added to the ``calm`` films: (films forced on, films negative for it, films
    forced off, films positive for it). Forced: across the label's line and moved by at least MIN_LOGIT_DROP."""
    after = logits_of(forward, calm + pattern[None])
    negative = calm_logits < cut
    on = negative & (after >= cut) & (after - calm_logits >= MIN_LOGIT_DROP)
    off = ~negative & (after < cut) & (calm_logits - after >= MIN_LOGIT_DROP)
    return on.sum(0), negative.sum(0), off.sum(0), (~negative).sum(0)


def holds(forced: np.ndarray, control: np.ndarray, total: np.ndarray):
    """Per label: (the share of ``total`` films the pattern forced, the control's share, whether the test holds:
    at least :data:`LEAST`, and :data:`EXCESS` times the control's count with one film added to both)."""
    share, c_share = forced / np.maximum(total, 1), control / np.maximum(total, 1)
    return share, c_share, (share >= LEAST) & ((forced + 1) >= EXCESS * (control + 1))


def matched(logits: np.ndarray, candidates: list[int], pool: list[int]) -> list[int]:
    """For each candidate the film of ``pool`` with the nearest logits (L1), each used once."""
    free, out = list(pool), []
    for i in candidates:
        if not free:
            break
        j = int(np.argmin(np.abs(logits[free] - logits[i]).sum(1)))
        out.append(free.pop(j))
    return out


def transplant(cand_views: np.ndarray, calm_views: np.ndarray, forward, labels: list[str], thresholds: np.ndarray,
               controls: int = CONTROLS) -> dict:
    """The test on the candidates' and the calm films' [0, 1] model views; ``forward`` maps views to logits.
    Returns ``{"established", "labels": [the labels it forces on], "forced_off": [those it forces off],
    "per_label": {label: {"forced", "control", "negative", "forced_off", "control_off", "positive"}}}`` (the
    shares of the calm films negative for the label forced on, of those positive forced off) and, when
    established, what :func:`..verification.verify_pattern` takes out of an image:
    ``pattern`` (the candidates' mean minus the calm mean) and ``controls`` (the same difference for ``controls``
    groups of calm films, each matched to the candidates' logits from the films the groups before left), each at
    :data:`TAKE_OUT` times."""
    if len(calm_views) < 2 * len(cand_views):  # files that vanished since the scan can leave too few
        return {"established": False, "labels": [], "skipped": f"{len(calm_views)} calm films readable; the test "
                f"needs {2 * len(cand_views)}"}
    cut = np.log(thresholds) - np.log1p(-thresholds)
    calm_logits = logits_of(forward, calm_views)
    both = np.concatenate([logits_of(forward, cand_views), calm_logits])
    n, base = len(cand_views), calm_views.mean(0)
    pool, twins = list(range(n, len(both))), []
    for _ in range(controls):
        group = matched(both, list(range(n)), pool)
        if len(group) < n:
            break
        twins.append(calm_views[[j - n for j in group]].mean(0) - base)
        taken = set(group)
        pool = [j for j in pool if j not in taken]
    pattern = cand_views.mean(0) - base
    forced, negative, forced_off, positive = forced_share(forward, calm_views, calm_logits, cut, pattern)
    control, _, control_off, _ = forced_share(forward, calm_views, calm_logits, cut, twins[0])
    share, c_share, ok = holds(forced, control, negative)
    off, c_off, ok_off = holds(forced_off, control_off, positive)
    out = {"established": bool(ok.any() or ok_off.any()), "labels": [lab for lab, y in zip(labels, ok) if y],
           "forced_off": [lab for lab, y in zip(labels, ok_off) if y], "candidates": n, "calm": len(calm_views),
           "per_label": {lab: {"forced": round(float(s), 3), "control": round(float(c), 3), "negative": int(k),
                               "forced_off": round(float(so), 3), "control_off": round(float(co), 3),
                               "positive": int(kp)}
                         for lab, s, c, k, so, co, kp in zip(labels, share, c_share, negative, off, c_off, positive)}}
    if out["established"]:
        out["pattern"], out["controls"] = TAKE_OUT * pattern, [TAKE_OUT * t for t in twins]
    return out
