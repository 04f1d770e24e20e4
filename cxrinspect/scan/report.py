"""Scan reports: ranking.csv and report.json for machines, report.html (one self-contained page) for people.

The page needs no network: images are inline PNG data, styles inline, no scripts. File names are shown;
patient identity never is (the scanner does not read it).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__, atomic
from ..saliency.overlay import blend, display_map, draw_box, with_colour_bar
from .compactness import SCORE

GALLERY = 24
METRICS = ("window_share_3", "window_share_5", "window_share_9", "top1_share", "area50", "entropy",
           "component_area", "component_share")


def thumbnail(view: np.ndarray, saliency: np.ndarray, box, title: str, zoom: int = 4, context: int = 12) -> bytes:
    """PNG of the model view with its saliency overlay and hotspot box, a zoomed inset of the hotspot
    beside it, and a colour bar: what one gallery entry shows."""
    grey = np.rint(np.clip(view, 0, 1) * 255).astype(np.uint8)
    over = draw_box(blend(grey, display_map(saliency, smooth=1.0), 0.6), box)
    t, l, b, r = box
    cy, cx = (t + b) // 2, (l + r) // 2
    h, w = grey.shape
    y0, x0 = min(max(cy - context, 0), max(h - 2 * context, 0)), min(max(cx - context, 0), max(w - 2 * context, 0))
    crop = np.stack([grey[y0:y0 + 2 * context, x0:x0 + 2 * context]] * 3, -1)
    inset = draw_box(np.kron(crop, np.ones((zoom, zoom, 1), np.uint8)),
                     ((t - y0) * zoom, (l - x0) * zoom, (b - y0) * zoom, (r - x0) * zoom), width=1)
    pad = np.zeros((h, inset.shape[1], 3), np.uint8)
    pad[: min(h, inset.shape[0])] = inset[:h]
    return png(with_colour_bar(np.concatenate([over, np.full((h, 4, 3), 0, np.uint8), pad], 1), title))


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def write_ranking(path: Path, result) -> None:
    labels = list(result.ranked[0].probabilities) if result.ranked else []
    cols = ["rank", "path", "score", "suspicion", "verdict", "label", "hotspot_top", "hotspot_left", "hotspot_bottom",
            "hotspot_right", "hotspot_y", "hotspot_x", "verified_label", "direction", "evidence", "drop_when_masked",
            "logit_drop_when_masked", "collapsed", "psc", "contrast", "mirror", "distill_kept",
            *METRICS, *(f"p_{lab}" for lab in labels)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in result.ranked:
        v = r.verification or {}
        cy, cx = (f"{c:.4f}" for c in r.hotspot_centre) if r.hotspot_centre else ("", "")
        d = r.detectors
        w.writerow([r.rank, r.path, f"{r.score:.6f}", "" if r.suspicion is None else r.suspicion, r.verdict, r.label,
                    *(r.hotspot or ("",) * 4), cy, cx, v.get("label", ""), v.get("direction", ""), v.get("evidence", ""),
                    v.get("drop", ""), v.get("logit_drop", ""), v.get("collapsed", ""),
                    d.get("psc", {}).get("score", ""), d.get("contrast", {}).get("score", ""),
                    d.get("mirror", {}).get("score", ""), d.get("distill", {}).get("kept", ""),
                    *(r.metrics.get(m, "") for m in METRICS), *(r.probabilities.get(lab, "") for lab in labels)])
    atomic.write_text(path, buf.getvalue())


def summary(result, card, threshold: float) -> dict:
    from .run import flagged

    ranked = result.ranked
    return {
        "images": len(result.records), "scanned": len(ranked), "errors": len(result.errors),
        "flagged": sum(flagged(r, threshold) for r in ranked),
        "verified": sum(r.verification is not None and "error" not in r.verification for r in ranked),
        "collapsed": sum(bool((r.verification or {}).get("collapsed")) for r in ranked),
        "threshold": threshold, "score": SCORE, "complete": result.complete, "seconds": round(result.seconds, 2),
    }


def write_report(out_dir: str | Path, result, card, threshold: float) -> dict:
    """ranking.csv, report.json and report.html in ``out_dir`` (each written atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"ranking": out / "ranking.csv", "json": out / "report.json", "html": out / "report.html"}
    write_ranking(files["ranking"], result)
    head = summary(result, card, threshold)
    doc = {
        "tool": f"cxrinspect {__version__} scan", "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": card.name, "weights_sha256": card.weights_sha256, "labels": card.labels,
                  "declared_poisoned": card.poisoned,
                  "declared_trigger": card.trigger.to_dict() if card.trigger else None},
        "settings": result.settings, "summary": head, "folder_verdict": result.verdict,
        "recurring_hotspots": result.hotspots,
        "candidates": [r.to_dict() for r in result.ranked if r.verification is not None or r.verdict != "clean"],
        "errors": [{"path": r.path, "error": r.error} for r in result.errors],
    }
    atomic.write_text(files["json"], json.dumps(doc, indent=1))
    atomic.write_text(files["html"], page(doc, result, threshold))
    return {k: str(v) for k, v in files.items()}


# ------------------------------------------------------------------ the page
def _histogram(scores: list[float], threshold: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=100)
    if scores:
        top = max(max(scores), threshold) * 1.05
        ax.hist(scores, bins=np.linspace(0, top, 41), color="#4477aa")
    ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"flag at {threshold:g}")
    ax.set_xlabel("score: share of saliency in the best 3x3 window")
    ax.set_ylabel("images")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def _heat_map(centres: list[tuple[float, float]], bins: int = 28) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.0), dpi=100)
    grid = np.zeros((bins, bins))
    for y, x in centres:
        grid[min(int(y * bins), bins - 1), min(int(x * bins), bins - 1)] += 1
    im = ax.imshow(grid, cmap="inferno", extent=(0, 1, 1, 0))
    ax.set_xlabel("x (fraction of width)")
    ax.set_ylabel("y (fraction of height)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="hotspots")
    fig.tight_layout()
    return _figure_png(fig)


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
.alert{background:#fde8e4;border-left:5px solid #cc3311;padding:8px 12px}.ok{background:#e8f4ea;border-left:5px solid #228833;padding:8px 12px}
.gallery{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #ccc;padding:6px;width:min-content}
.card img{display:block}.trigger{color:#cc3311;font-weight:bold}.suspicious{color:#ee7733;font-weight:bold}
.path{word-break:break-all;font-family:monospace;font-size:12px}"""


def page(doc: dict, result, threshold: float) -> str:
    e = html.escape
    s, model = doc["summary"], doc["model"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cxrinspect scan report</title>"
             f"<style>{STYLE}</style></head><body><h1>cxrinspect scan report</h1>"]
    parts.append(f"<p>Model <b>{e(model['name'] or '?')}</b> (weights {e(model['weights_sha256'][:12])}), "
                 f"method <b>{e(str(doc['settings']['method']))}</b> (saliency of the <b>{e(str(doc['settings']['label']))}</b> "
                 f"label); {s['images']} file(s), {s['scanned']} scanned, {s['errors']} unreadable, "
                 f"in {s['seconds']:.0f} s; {e(doc['created'])}." + ("" if s["complete"] else
                 " <b>The scan is incomplete (cancelled or interrupted): resume it for the rest.</b>") + "</p>")
    verdict = doc.get("folder_verdict") or {}
    if verdict:
        parts.append(f"<p class='{'alert' if verdict['triggered'] else 'ok'}'><b>Folder verdict:</b> "
                     f"{e(verdict['sentence'])}</p>")
    if s["collapsed"]:
        where = ""
        if result.hotspots:
            h = max(result.hotspots, key=lambda h: h.get("collapsed", 0))
            where = (f" Where they gather: y={h['centre'][0]:.2f}, x={h['centre'][1]:.2f} of the image "
                     f"({h['top_count']} of the top {h['top_k']} images; {h['all_count']} of all {h['all_images']}, "
                     f"of which {h.get('collapsed', 0)} collapse when masked).")
        parts.append(f"<p class='alert'><b>{s['collapsed']} image(s) behave like triggered inputs:</b> hiding what "
                     f"the detectors found (the saliency hotspot, a distilled mask, or a pattern the candidates share) "
                     f"collapses the prediction.{where}</p>")
    else:
        parts.append(f"<p class='ok'>No image's prediction collapsed when what the detectors found was hidden "
                     f"({s['verified']} checked; {s['flagged']} flagged by a detector).</p>")
    parts.append("<h2>Scores and hotspot positions</h2>")
    scores = [r.score for r in result.ranked]
    parts.append(f"<img alt='score histogram' src='{_data_uri(_histogram(scores, threshold))}'> "
                 f"<img alt='hotspot heat map' src='{_data_uri(_heat_map([r.hotspot_centre for r in result.ranked if r.hotspot_centre]))}'>")
    parts.append("<h2>Recurring hotspot locations (among the top-ranked images)</h2>")
    if result.hotspots:
        parts.append("<table><tr><th>centre y, x (fraction)</th><th>top-ranked images there</th><th>all images there</th>"
                     "<th>checked near it</th><th>collapse when masked</th></tr>")
        for h in result.hotspots:
            parts.append(f"<tr><td>{h['centre'][0]:.3f}, {h['centre'][1]:.3f}</td><td>{h['top_count']} of {h['top_k']} "
                         f"({100 * h['top_share']:.0f}%)</td><td>{h['all_count']} of {h['all_images']}</td>"
                         f"<td>{h.get('verified', '')}</td><td>{h.get('collapsed', '')}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None: the top-ranked hotspots do not gather in one place.</p>")
    parts.append("<h2>Top candidates</h2><p>Left: the image as the model sees it, saliency overlaid, hotspot boxed; "
                 "right: the hotspot magnified.</p><div class='gallery'>")
    for r in result.ranked[:GALLERY]:
        v = r.verification or {}
        pattern = v.get("evidence") == "pattern"
        what = {"mask": "the distilled mask", "box": "the hotspot", "place": "the place where the trigger collapsed "
                "others", "pattern": "the pattern the top candidates share"}.get(v.get("evidence", "box"), "the hotspot")
        check = (f"{'taking out' if pattern else 'hiding'} {what} moves {e(v['label'])} {v['before']:.4g} &rarr; "
                 f"{v['masked']:.4g}, {v['logit_drop']:.1f} log-odds ({'controls' if pattern else 'masking elsewhere'}: "
                 f"{v['control_logit_drop']:.1f})" if "logit_drop" in v
                 else "a whole-image trigger leaves nothing to hide" if v.get("evidence") == "global"
                 else e(v.get("error", "not checked")))
        extra = "".join(f"; {name} {r.detectors[key]['score']:.2f}" for key, name in
                        (("psc", "PSC"), ("contrast", "contrast loss"), ("mirror", "mirror loss"))
                        if key in r.detectors)
        img = result.thumbnails.get(r.path)
        parts.append(f"<div class='card'>{f'<img src={_data_uri(img)!r}>' if img else ''}"
                     f"<div>#{r.rank} score {r.score:.3f}{extra} <span class='{e(r.verdict)}'>{e(r.verdict)}</span></div>"
                     f"<div>{e(r.label)} p={r.probabilities.get(r.label, 0):.2f}; {check}</div>"
                     f"<div class='path'>{e(r.path)}</div></div>")
    parts.append("</div>")
    parts.append(f"<h2>Unreadable files ({len(result.errors)})</h2>")
    if result.errors:
        parts.append("<table><tr><th>file</th><th>reason</th></tr>" + "".join(
            f"<tr><td class='path'>{e(r.path)}</td><td>{e(r.error or '')}</td></tr>" for r in result.errors) + "</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<p>Full ranking: ranking.csv; machine-readable summary: report.json.</p></body></html>")
    return "\n".join(parts)
