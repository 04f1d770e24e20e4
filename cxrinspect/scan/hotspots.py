"""Recurring hotspot locations: a BadNets trigger sits in one place, so the hotspots of the images it
fires on pile up there, while real findings scatter over the lungs."""

from __future__ import annotations

import numpy as np

RADIUS = 0.03
"""Hotspots closer than this (fraction of the image side; about 7 pixels at 224) are the same place."""


def recurring(records, top_k: int, radius: float = RADIUS, min_count: int = 3) -> list[dict]:
    """Places where at least ``min_count`` of the ``top_k`` best-ranked records have their hotspot.

    ``records``: ranked records (most suspicious first) with a ``hotspot_centre``. For each place: its
    centre (fractions y, x of the model view), how many of the top ``top_k`` sit there, and how many of
    all records do (a trigger location also catches images it did not fire on strongly)."""
    ranked = [r for r in records if r.hotspot_centre is not None]
    top = ranked[:top_k]
    clusters: list[dict] = []
    for r in top:
        y, x = r.hotspot_centre
        for c in clusters:
            cy, cx = c["centre"]
            if np.hypot(y - cy, x - cx) <= radius:
                c["members"].append(r)
                n = len(c["members"])
                c["centre"] = (cy + (y - cy) / n, cx + (x - cx) / n)
                break
        else:
            clusters.append({"centre": (y, x), "members": [r]})
    out = []
    everywhere = np.array([r.hotspot_centre for r in ranked]) if ranked else np.zeros((0, 2))
    for c in sorted(clusters, key=lambda c: -len(c["members"])):
        n = len(c["members"])
        if n < min_count:
            continue
        cy, cx = c["centre"]
        near = int((np.hypot(everywhere[:, 0] - cy, everywhere[:, 1] - cx) <= radius).sum())
        out.append({"centre": [round(cy, 4), round(cx, 4)], "top_count": n, "top_k": len(top),
                    "top_share": round(n / max(1, len(top)), 4), "all_count": near, "all_images": len(ranked),
                    "paths": [m.path for m in c["members"]]})
    return out
