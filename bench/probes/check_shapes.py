"""Which region should the counterfactual check hide when a trigger is larger or longer than the hotspot? On the
first N held-out test images of a backdoored model (every image clean and every image triggered, as the zoo bench
writes them), for its forced triggered images and its clean images, and for the same clean images under a clean
model: the gradient map (the scanner's own), then the check (``verify``, its controls and rule) hiding each of
several regions round the hotspot. Prints, per region, how many images collapse, and the clean images' largest
fall and excess, so that a region that confirms more forced images is weighed against the false alarms it costs.

    nice -n 5 .venv/bin/python bench/probes/check_shapes.py bench/zoo/zoo-tag-moving \
        --clean-model resources/models/kermany-densenet121-clean --images 200 --work /tmp/mm-tag
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import both_ways, forced  # noqa: E402

from cxrinspect.inference.predictor import Predictor  # noqa: E402
from cxrinspect.audit.run import probabilities  # noqa: E402
from cxrinspect.model import load as load_model  # noqa: E402
from cxrinspect.scan import Scanner  # noqa: E402
from cxrinspect.scan.compactness import compactness, summed_area  # noqa: E402
from cxrinspect.scan.run import mask_box  # noqa: E402
from cxrinspect.scan.scanner import ScanRecord  # noqa: E402
from cxrinspect.scan.verification import verify  # noqa: E402


def best_rect(m, kh, kw):
    table = summed_area(m)
    sums = table[kh:, kw:] - table[:-kh, kw:] - table[kh:, :-kw] + table[:-kh, :-kw]
    t, l = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(t), int(l), int(t) + kh, int(l) + kw


def overlap(a, b):
    return not (b[0] >= a[2] or a[0] >= b[2] or b[1] >= a[3] or a[1] >= b[3])


def join(a, b):
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def regions(m):
    """name -> box (or None when the shape does not apply to this map)."""
    c = compactness(m)
    rec = ScanRecord("x", view_hotspot=tuple(c.window_box[3]), metrics=c.to_dict())
    base = mask_box(rec)
    out = {"now": base}
    low = compactness(m, (3,), 0.25)
    cb = low.component_box
    small = max(cb[2] - cb[0], cb[3] - cb[1]) <= 24
    out["component@0.25<=24"] = join(base, cb) if overlap(base, cb) and small else None
    for name, (kh, kw) in {"bar 7x21": (7, 21), "bar 21x7": (21, 7)}.items():
        r = best_rect(m, kh, kw)
        out[name] = join(base, r) if overlap(base, r) else None
    cy, cx = (base[0] + base[2]) // 2, (base[1] + base[3]) // 2
    out["square 13"] = (max(cy - 6, 0), max(cx - 6, 0), min(cy + 7, 224), min(cx + 7, 224))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--clean-model", required=True)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    torch.set_grad_enabled(True)
    model = load_model(a.model)
    card, spec = model.card, model.card.preprocessing
    clean, trig = both_ways(model, a.images, Path(a.work or tempfile.mkdtemp(prefix="check-shapes-")))
    n = len(clean)

    def study(m, views):
        scanner = Scanner(m, method="gradient", device="cpu")
        pred = Predictor(m, device="cpu", backend="torch")
        probs, per = [], []
        for s in range(0, len(views), 8):
            p, maps, _ = scanner.maps(views[s:s + 8])
            probs.append(p)
            for v, mp in zip(views[s:s + 8], maps):
                per.append({k: (verify(v, box, spec, pred.probabilities, m.card.labels) if box else None)
                            for k, box in regions(mp).items()})
        return np.concatenate(probs), per

    p_clean, clean_checks = study(model, clean)
    fired = np.nonzero(forced(card, probabilities(model.network, trig, spec), p_clean))[0]
    _, forced_checks = study(model, trig[fired])
    clean_model = load_model(a.clean_model)
    _, cm_checks = study(clean_model, clean)
    print(f"{card.name}: {n} images, {len(fired)} forced", flush=True)
    for name in clean_checks[0]:
        row = []
        for title, checks in (("forced", forced_checks), ("clean", clean_checks), ("clean model", cm_checks)):
            got = [c[name] for c in checks if c[name] is not None]
            col = sum(c["collapsed"] for c in got)
            worst = max((c["logit_drop"] for c in got), default=0)
            excess = max((c["logit_drop"] - max(c["control_logit_drop"], 0) for c in got), default=0)
            row.append(f"{title}: {col}/{len(got)} collapsed (max fall {worst:.2f}, excess {excess:.2f})")
        print(f"{name:20s} " + "; ".join(row))
    for extra in [k for k in clean_checks[0] if k != "now"]:
        row = []
        for title, checks in (("forced", forced_checks), ("clean", clean_checks), ("clean model", cm_checks)):
            col = sum(c["now"]["collapsed"] or bool(c[extra] and c[extra]["collapsed"]) for c in checks)
            row.append(f"{title} {col}/{len(checks)}")
        print(f"now, then {extra:20s}: " + ", ".join(row))


if __name__ == "__main__":
    main()
