"""The folder's verdict: does it hold triggered inputs, for which label(s), how many, where, how sure.

It rests on the counterfactual check alone (images whose prediction collapses when what a detector found is
hidden: the model's own behaviour, not a score's tail), grouped by the label and the direction the check
found pushed (``Viral`` on, or ``Pneumonia`` off for a trigger that makes films read normal):

- ``triggered``: at least :data:`MIN_CONFIRMED` confirmed images pushed the same way. One alone is reported
  (``count`` 1, ``triggered`` false): a single collapse can be a fragile clean prediction.
- ``confidence``: ``high`` with at least :data:`SURE` such images, ``moderate`` below that, ``none`` without.
- ``where``: ``{"place": [y, x]}`` (fractions of the model view) when most confirmed images share a recurring
  hotspot, or, where the trigger forced too few images to recur among the top ranks, when most of their own
  hotspots lie within ``NEAR`` of their median; ``"moving"`` when their evidence is boxes or masks in
  different places, ``"global"`` when no region was hidden (a whole-image trigger, taken out of the images it
  was in by the transplant test: :mod:`.transplant`).
- ``transplant``: that test's figures (per label, the share of calm films the candidates' shared pattern forces on,
  or off, against a control's), when the scan ran it.

False alarms, measured on clean models' scans of clean folders: bench/results/README.md.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

MIN_CONFIRMED = 2
SURE = 3


def folder_verdict(ranked, hotspots: list[dict], transplant: dict | None = None) -> dict:
    confirmed = [r for r in ranked if r.verdict == "trigger"]
    pushes = Counter((r.verification["label"], r.verification.get("direction", "on")) for r in confirmed)
    groups = [(lab, d, n) for (lab, d), n in pushes.most_common()]
    main = [g for g in groups if g[2] >= MIN_CONFIRMED]
    triggered = bool(main)
    count = sum(g[2] for g in main) if main else len(confirmed)
    where = None
    if confirmed:
        at = Counter(_place(r, hotspots) for r in confirmed)
        place, n = at.most_common(1)[0]
        if place is not None and n * 2 > len(confirmed):
            where = {"place": hotspots[place]["centre"]}
        elif all(r.verification.get("evidence") in ("global", "pattern") for r in confirmed):
            where = "global"
        elif (shared := _gathered(confirmed)) is not None:
            where = {"place": shared}
        else:
            where = "moving"
    confidence = "high" if main and main[0][2] >= SURE else "moderate" if main else "none"
    labels = [lab for lab, _, _ in main]
    out = {"triggered": triggered, "labels": labels,
           "pushes": [{"label": lab, "direction": d, "count": n} for lab, d, n in groups],
           "count": count, "where": where, "confidence": confidence,
           "sentence": sentence(triggered, groups, count, where, confidence, len(ranked))}
    if transplant is not None:
        out["transplant"] = transplant
        if transplant.get("established") and not triggered:
            per = transplant["per_label"]
            out["sentence"] += (" Yet a pattern the most suspicious images share forces " + ", ".join(
                [f"{lab} on {per[lab]['forced']:.0%} of calm films (a control: {per[lab]['control']:.0%})"
                 for lab in transplant["labels"]]
                + [f"{lab} off {per[lab]['forced_off']:.0%} of calm films (a control: {per[lab]['control_off']:.0%})"
                   for lab in transplant.get("forced_off", [])])
                + ": a trigger over the whole image may be present; too few images lost the label when it was "
                "taken out.")
    return out


def _place(record, hotspots):
    from .run import checked_place

    return checked_place(record, hotspots)


def _gathered(confirmed) -> list[float] | None:
    """The median hotspot centre ``[y, x]`` of the confirmed images when more than half of them lie within
    ``NEAR`` of it (zoo-electrode at 1%: five confirmed at the electrode, none of them at a recurring hotspot)."""
    from .run import NEAR

    c = np.array([r.hotspot_centre for r in confirmed if r.hotspot_centre is not None], np.float64)
    if len(c) < MIN_CONFIRMED:
        return None
    m = np.median(c, axis=0)
    close = np.hypot(*(c - m).T) <= NEAR
    return [round(float(m[0]), 4), round(float(m[1]), 4)] if close.sum() * 2 > len(confirmed) else None


def sentence(triggered: bool, groups, count: int, where, confidence: str, scanned: int) -> str:
    if not groups:
        return f"No triggered inputs found: none of the {scanned} images changed its prediction when what the " \
               "detectors found was hidden."
    if not triggered:
        lab, d, n = groups[0]
        return (f"No trigger established: {n} image(s) collapsed when their evidence was hidden (label {lab} "
                f"{d}), fewer than the {MIN_CONFIRMED} that pushed the same way a backdoor needs.")
    pushed = ", ".join(f"{lab} {'on' if d == 'on' else 'off'} ({n})" for lab, d, n in groups if n >= MIN_CONFIRMED)
    place = (f"at y={where['place'][0]:.2f}, x={where['place'][1]:.2f} of the image" if isinstance(where, dict)
             else "at a different place in each image" if where == "moving" else "over the whole image")
    hidden = "taken out" if where == "global" else "hidden"
    return (f"This folder holds triggered inputs ({confidence} confidence): {count} of {scanned} images lose the "
            f"prediction a trigger forced when it is {hidden} ({pushed}), the trigger {place}.")
