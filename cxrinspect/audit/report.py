"""Audit outputs: audit.json (machines), trigger.json (the recovered trigger as a Trigger the rest of the
project can paste), audit.html (one self-contained page: inline PNG, no scripts, no network)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .. import atomic
from ..scan.report import STYLE, _data_uri, _figure_png, png
from .anomaly import JUDGED_IMAGES
from .inversion import mask_core
from .run import trigger_of


def _grey(a: np.ndarray, zoom: int = 1) -> np.ndarray:
    g = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
    if zoom > 1:
        g = np.kron(g, np.ones((zoom, zoom), np.uint8))
    return np.stack([g] * 3, -1)


def _boxed(rgb: np.ndarray, box) -> np.ndarray:
    from ..saliency.overlay import draw_box

    return draw_box(rgb, tuple(box))


def recovered_trigger(mask: np.ndarray, pattern: np.ndarray, box) -> dict:
    """The recovered trigger as a :class:`cxrinspect.trigger.Trigger` (a ``picture`` patch at its fractional place
    in model-input pixels): the mask's box filled with the pattern where the mask is on and, where it is off,
    with the pattern's mean there (a picture patch is opaque)."""
    from ..trigger import Trigger

    t, l, b, r = box
    s = mask.shape[0]
    on = mask_core(mask)[t:b, l:r]
    pix = pattern[t:b, l:r]
    fill = float(pix[on].mean()) if on.any() else float(pix.mean())
    pixels = np.where(on, pix, fill)
    trig = Trigger(kind="patch", pattern="picture", pixels=tuple(tuple(float(round(v, 4)) for v in row) for row in pixels),
                   location=((l + r) / 2 / s, (t + b) / 2 / s), space="input")
    return trig.to_dict()


def _anomaly_plot(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .anomaly import ABSOLUTE_PIXELS, PARTIAL_PIXELS, PARTIAL_SUCCESS

    fig, ax = plt.subplots(figsize=(5.5, 2.8), dpi=100)
    names = [r["candidate"] for r in rows]
    sizes = [r["mask_l1"] if r["mask_l1"] is not None else 224 * 224 for r in rows]
    colours = ["#cc3311" if r.get("flagged") else "#4477aa" for r in rows]
    ax.bar(range(len(rows)), sizes, color=colours)
    ax.set_yscale("log")
    ax.axhline(ABSOLUTE_PIXELS, color="#cc3311", linestyle="--", label=f"absolute line {ABSOLUTE_PIXELS:g} px")
    ax.axhline(PARTIAL_PIXELS, color="#ee7733", linestyle=":",
               label=f"partial line {PARTIAL_PIXELS:g} px ({PARTIAL_SUCCESS:.0%} held-out)")
    ax.set_xticks(range(len(rows)), names, rotation=20, fontsize=8)
    for i, r in enumerate(rows):
        ax.text(i, sizes[i], f"idx {r.get('anomaly_index', 0):.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("mask L1 (pixels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def finder_name(found: dict) -> str:
    """What recovered a trigger (audit.json's ``trigger`` or a candidate row): the stamp sweep, the inversion, or
    the whole-image inversion."""
    by = found.get("found_by") or found.get("source")
    return {"sweep": "stamp sweep", "whole-image inversion": "whole-image inversion",
            "warp inversion": "warp inversion"}.get(by, "inversion")


def forced_phrase(doc: dict) -> str:
    """What a backdoored model's verdict forces: "forces Viral on", "forces Viral off", or both."""
    parts = [f"forces {', '.join(doc[key])} {way}" for key, way in (("targets", "on"), ("forced_off", "off"))
             if doc.get(key)]
    return " and ".join(parts)


def whole_share(g: dict | None) -> str:
    """A candidate's whole-image figure in words: the family, the share of calm held-out films it forced and the share
    it still forced made smaller (what the line reads), or why it did not run; "" where the stage did not run."""
    if not g:
        return ""
    if g.get("heldout_success") is None:
        return g.get("stop", "not run")
    return (f"{g['family']} {100 * g['heldout_success']:.0f}% of {g['held_out']} calm, "
            f"{100 * g['reduced_success']:.0f}% at {g['scale']:g}x")


def warp_share(w: dict | None) -> str:
    """A candidate's warp figure in words: the best run's share of calm held-out films forced and the runs made, or
    why it did not run; "" where the stage did not run."""
    if not w:
        return ""
    if w.get("heldout_success") is None:
        return w.get("stop", "not run")
    return (f"warp {100 * w['heldout_success']:.0f}% of {w['held_out']} calm "
            f"(best of {len(w['restarts'])} run{'s' if len(w['restarts']) > 1 else ''})")


def global_pictures(arm: dict, views: np.ndarray, paths: list[str], family: str) -> list[tuple[str, np.ndarray]]:
    """(caption, [0, 1] picture) of a candidate's whole-image trigger: the change (mid-grey: none, the contrast
    stretched to the bound) or, for a warp, its displacement's size (white: the bound), then the held-out films it
    forces with the trigger applied."""
    from .inversion import warp_views

    label = arm["candidate"].label
    if family == "warp":
        f, w = arm["warp_field"], arm["warp"]
        bound = w["bound_px"] * views.shape[-1] / 224.0
        pictures = [(f"warp's displacement (white: {bound:.1f} px)", np.hypot(f[0], f[1]) / bound)]
        return pictures + [(f"{Path(paths[i]).name}: {label} → {after:.2f}", warp_views(views[i][None], f)[0].numpy())
                           for i, after in arm.get("warp_flips", [])]
    d, eps = arm["global_delta"], arm["global"]["epsilon"]
    return [("whole-image change", 0.5 + d / (2 * eps))] + [
        (f"{Path(paths[i]).name}: {label} → {after:.2f}", views[i] + d) for i, after in arm.get("global_flips", [])]


def undecided_sentence(doc: dict) -> str:
    """The candidates the audit had too few held-out images to clear (audit.json's ``undecided``), or ""."""
    u = doc.get("undecided") or []
    if not u:
        return ""
    items = "; ".join(f"{x['candidate']} ({x['held_out']} held-out image(s) the model calls "
                      + ("negative for every label, for the whole-image line" if x.get("stage") == "whole image" else
                         f"{'negative' if x['direction'] == 'on' else 'positive'} for {x['label']}") + ")" for x in u)
    return (f"Not judged, too few images: {items}; {JUDGED_IMAGES} are needed. Audit again with more images the "
            "model calls that way.")


def caveats(doc: dict) -> list[str]:
    """What the verdict cannot settle, in sentences: candidates too few images judged (:func:`undecided_sentence`),
    a model flagged by the whole-image line alone, which zoo-faint (a backdoor that did not take) crossed on the
    validation films (:data:`.anomaly.WHOLE_IMAGE_LINES`), and one flagged by the warp line alone, a line drawn on
    few models (:data:`.anomaly.WARP_LINES`)."""
    out = [undecided_sentence(doc)]
    lines = {line for c in doc.get("candidates", []) if c.get("flagged") for line in c["flagged_by"]}
    if lines == {"whole image"}:
        out.append("Flagged by the whole-image line alone: on films it was not drawn on, a fine-tune whose backdoor "
                   "did not take crossed it with a label it was not poisoned for. Confirm with a folder scan or "
                   "another image set before acting on it.")
    elif lines == {"warp"}:
        out.append("Flagged by the warp line alone: a line drawn on four clean models and one warp backdoor. Confirm "
                   "with another image set before acting on it.")
    return [x for x in out if x]


def trigger_sentence(t: dict) -> str:
    """The recovered trigger in words (audit.json's ``trigger``)."""
    if t["box"] is None and t.get("family") == "warp":
        return (f"a smooth warp of the whole image (at most {t['bound_px']:g} px of 224, a {t['grid']} x {t['grid']} "
                f"control grid), found by the warp inversion; applied to held-out calm clean images it forces "
                f"{t['candidate']} on {100 * t['heldout_success']:.0f}% of them")
    if t["box"] is None:
        return (f"a change of the whole image (at most {t['epsilon']:g} per pixel, {t['family']}), found by the "
                f"whole-image inversion; added to held-out clean images it forces {t['candidate']} on "
                f"{100 * t['heldout_success']:.0f}% of them, and on {100 * t['reduced_success']:.0f}% made "
                f"{t['scale']:g} times as large")
    return (f"box {t['box']} (top, left, bottom, right; model-input pixels), mask L1 {t['mask_l1']:.0f} px, found by "
            f"the {finder_name(t)}; stamped into held-out clean images it forces {t['candidate']} on "
            f"{100 * t['heldout_success']:.0f}% of them")


def write_report(out_dir, result, model) -> dict:
    out = Path(out_dir)
    doc = result.doc
    files = {"json": out / "audit.json", "html": out / "audit.html"}
    arms = {a["candidate"].name: a for a in result.arms}
    if doc.get("trigger") and doc["trigger"]["box"] is not None:
        mask, pattern, _, _ = trigger_of(arms[doc["trigger"]["candidate"]])
        doc["trigger"]["as_trigger"] = recovered_trigger(mask, pattern, doc["trigger"]["box"])
        files["trigger"] = out / "trigger.json"
        atomic.write_text(files["trigger"], json.dumps(doc["trigger"]["as_trigger"], indent=1))
    atomic.write_text(files["json"], json.dumps(doc, indent=1))
    atomic.write_text(files["html"], page(doc, result))
    return {k: str(v) for k, v in files.items()}


def page(doc: dict, result) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cxrinspect audit</title><style>{STYLE}</style>"
             "</head><body><h1>cxrinspect model audit</h1>"]
    m = doc["model"]
    parts.append(f"<p>Model <b>{e(m['name'] or '?')}</b> (weights {e((m['weights_sha256'] or '')[:12])}); "
                 f"{doc['images']} clean image(s) read ({doc['optimised_on']} to optimise, {doc['held_out']} held out), "
                 f"{len(doc['errors'])} unreadable; {doc['steps']} of {doc['step_budget']} steps "
                 f"({doc['image_passes']} image passes) in {doc['timing']['seconds']:.0f} s.</p>")
    if not doc["complete"]:
        parts.append("<p class='alert'><b>Incomplete</b> (cancelled or interrupted): resume it for a verdict.</p>")
    elif doc["backdoored"]:
        t = doc["trigger"]
        parts.append(f"<p class='alert'><b>Backdoored:</b> {e(forced_phrase(doc))}. "
                     f"Recovered trigger: {e(trigger_sentence(t))}.</p>")
    else:
        parts.append("<p class='ok'><b>No backdoor found:</b> no label can be forced by a small mask, or by a faint "
                     "change of the whole image or a smooth warp of it, on held-out images.</p>")
    if doc["complete"]:
        parts += [f"<p class='alert'>{e(x)}</p>" for x in caveats(doc)]
    rows = doc.get("candidates", [])
    if rows and doc["complete"]:
        parts.append(f"<h2>Mask size per candidate</h2><img alt='anomaly plot' src='{_data_uri(_anomaly_plot(rows))}'>")
    parts.append("<table><tr><th>candidate</th><th>mask L1 (px)</th><th>pixels &ge; 0.5</th><th>box</th>"
                 "<th>found by</th><th>anomaly index</th><th>held-out success</th><th>sweep's square (held-out)</th>"
                 "<th>whole image (held-out)</th><th>warp (held-out)</th><th>steps</th><th>stopped</th>"
                 "<th>flagged by</th></tr>")
    for r in rows:
        l1 = "" if r["mask_l1"] is None else f"{r['mask_l1']:.0f}"
        success = "" if r["heldout_success"] is None else f"{100 * r['heldout_success']:.0f}%"
        sq = r.get("square")
        square = "" if not sq else f"{sq['pattern_name']} {sq['size']}x{sq['size']} at {sq['top']}, {sq['left']}"
        if sq and sq.get("heldout_success") is not None:
            square += f" ({100 * sq['heldout_success']:.0f}%)"
        whole = whole_share(r.get("global"))
        parts.append(f"<tr><td>{e(r['candidate'])}</td><td>{l1}</td><td>{r['mask_pixels']}</td><td>{r['box']}</td>"
                     f"<td>{finder_name(r) if r['mask_l1'] is not None else ''}</td>"
                     f"<td>{r.get('anomaly_index', '')}</td><td>{success}</td><td>{e(square)}</td><td>{e(whole)}</td>"
                     f"<td>{e(warp_share(r.get('warp')))}</td>"
                     f"<td>{r['steps']}</td><td>{e(str(r['stop']))}</td>"
                     f"<td>{e(', '.join(r.get('flagged_by', [])) or 'no')}</td></tr>")
    parts.append("</table><h2>Recovered masks and patterns, and held-out images they flip</h2><div class='gallery'>")
    for a in result.arms:
        if a["inv"].steps == 0 and a.get("square") is None:
            continue
        mask, pattern, _, _ = trigger_of(a)
        row = next(r for r in rows if r["candidate"] == a["candidate"].name)
        imgs = [f"<img title='mask' src='{_data_uri(png(_boxed(_grey(mask), row['box'])))}'>",
                f"<img title='pattern where masked' src='{_data_uri(png(_grey(mask * pattern + (1 - mask) * 0.5)))}'>"]
        caption = []
        for i, before, after in a.get("flips", [])[:2]:
            x = result.views[i]
            stamped = (1 - mask) * x + mask * pattern
            imgs.append(f"<img src='{_data_uri(png(_boxed(_grey(stamped), row['box'])))}'>")
            caption.append(f"{e(Path(result.paths[i]).name)}: {before:.2f} &rarr; {after:.2f}")
        parts.append(f"<div class='card'><div><b>{e(a['candidate'].name)}</b></div><div style='display:flex;gap:4px'>"
                     f"{''.join(imgs)}</div><div>{'<br>'.join(caption)}</div></div>")
    parts.append("</div>")
    galleries = (("stripes", "global_delta", "Whole-image changes (mid-grey: none; the contrast stretched to the bound)"),
                 ("warp", "warp_field", "Warps (their displacement's size; white: the bound)"))
    for family, key, title in galleries:
        arms_ = [a for a in result.arms if a.get(key) is not None]
        if not arms_:
            continue
        parts.append(f"<h2>{title} and held-out images they flip</h2><div class='gallery'>")
        for a in arms_:
            pictures = global_pictures(a, result.views, result.paths, family)
            figure = whole_share(a["global"]) if family == "stripes" else warp_share(a["warp"])
            imgs = "".join(f"<img title='{e(cap)}' src='{_data_uri(png(_grey(unit)))}'>" for cap, unit in pictures)
            caption = "<br>".join([e(figure)] + [e(cap) for cap, _ in pictures[1:]])
            parts.append(f"<div class='card'><div><b>{e(a['candidate'].name)}</b></div><div style='display:flex;"
                         f"gap:4px'>{imgs}</div><div>{caption}</div></div>")
        parts.append("</div>")
    if doc.get("search", {}).get("skipped"):
        why = doc["search"]["skipped"]
        parts.append(f"<h2>Images in the folder carrying the recovered trigger</h2><p>{e(why[:1].upper() + why[1:])}."
                     "</p>")
    elif doc.get("search"):
        s = doc["search"]
        stopped = "" if s.get("complete", True) else " The search was cancelled there."
        parts.append(f"<h2>Images in the folder carrying the recovered trigger</h2><p>{len(s['carrying'])} of "
                     f"{s['checked']} collapse when its {s['mask_pixels']} pixels are hidden (and collapse less when the "
                     f"same mask is hidden elsewhere).{stopped}"
                     "</p><table><tr><th>image</th><th>label</th><th>log-odds fall</th></tr>"
                     + "".join(f"<tr><td class='path'>{e(x['path'])}</td><td>{e(x['label'])}</td>"
                               f"<td>{x['logit_drop']:.1f}</td></tr>" for x in s["carrying"]) + "</table>")
    parts.append(f"<h2>Unreadable files ({len(doc['errors'])})</h2>")
    parts.append("<table>" + "".join(f"<tr><td class='path'>{e(x['path'])}</td><td>{e(x['error'] or '')}</td></tr>"
                                     for x in doc["errors"]) + "</table></body></html>")
    return "\n".join(parts)
