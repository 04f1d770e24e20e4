"""Detection quality of the trigger scanner against two published data-level defences, in one run.

On the poisoned model's held-out test patients (its split.csv), every image is written to a folder as PNG
the way a poisoned copy is written (``cxrinspect.training.poisoning.write_copy``), a share of them (10% and
1%) with the model's own trigger stamped in (read from its card). The real ``cxrinspect scan`` pipeline
(:func:`cxrinspect.scan.scan`: scores, recurring hotspots, counterfactual check, final ranking, reports)
then scans each folder, and every method scores every file. Per rate:

- AUROC and precision at k = number triggered, over all triggered images and over those whose prediction the
  trigger forced (a positive target label at or above 0.9 with the trigger, below it without, up by at least
  0.3; for a target that turns labels off, the mirror: at or below 0.1 with it, down by at least 0.3: an image
  already reading as the target proves nothing), for
  - cxrinspect: the scan's final ranking (``--method``, default auto: confirmed triggers first, then by the
    combined suspicion), the report's order;
  - each detector the scan ran, alone: the gradient map's 3x3 window share, scaled-parameter, contrast and mirror
    consistency;
  - CAM compactness (share of the upsampled last-layer CAM in its top 1%): the coarse map, for reference;
  - activation clustering (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural Networks by
    Activation Clustering", arXiv:1811.03728): penultimate activations of the images the model assigns to a
    label, ICA to 10 dimensions, k-means with k = 2; the smaller cluster is the suspect; score = how much
    nearer an image lies to the smaller cluster's centre than to the larger one's, maximised over labels;
  - spectral signatures (Tran, Li, Madry 2018, "Spectral Signatures in Backdoor Attacks", NeurIPS): per
    label, centred penultimate representations of the images assigned to it, score = squared projection on
    the top singular vector (normalised by the label's median), maximised over labels;
- where the hotspots are (on each image's own trigger box: a moving trigger's place comes from its seed),
  how many images were checked, the verdicts, and the folder verdict;
- the cost per image of plain inference and of each detector, on the same 16 images in this run.
The two baselines are written here, faithfully to the papers, because the Adversarial Robustness Toolbox's
defences assume one-hot single-label classifiers and this model is multi-label (independent sigmoids):
"the images the model assigns to label j" = probability of j >= 0.5.

With ``--clean-model`` (repeatable) each clean model scans the all-clean folder and the 10% folder: false
alarms (flagged, confirmed, folder verdicts raised) on clean images and on triggered ones it was never
trained to react to.

``--records`` writes one CSV row per image, rate and model (its truth, every method's score, the scan's
rank and verdict), so any figure here can be recomputed or looked into.

    .venv/bin/python bench/scan_detection.py --model resources/models/kermany-densenet121-badnets \
        --clean-model resources/models/kermany-densenet121-clean \
        --out bench/results/scan_detection_badnets.json --records bench/results/scan_detection_badnets.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA
from sklearn.metrics import roc_auc_score

from cxrinspect.audit.run import probabilities
from cxrinspect.imaging import load
from cxrinspect.model import load as load_model
from cxrinspect.model.preprocess import model_view, normalise
from cxrinspect.scan import compactness, scan
from cxrinspect.training.evaluation import dataset_from_card, split_indices
from cxrinspect.training.poisoning import write_copy


def trigger_box(trigger, spec, seed: int):
    """Where ``write_folder`` put the trigger of image ``seed`` (model-input pixels), or None for a global one."""
    if not trigger.local:
        return None
    return trigger.box((spec.input_size, spec.input_size), np.random.default_rng(seed))


def write_folder(folder: Path, paths: list[str], triggered: set[int], trigger, spec, cache: Path) -> list[str]:
    """``folder`` holding every image of ``paths`` as PNG (a link to one written once into ``cache``), those
    at ``triggered`` with the trigger (placed with seed = the image's index: :func:`trigger_box`); returns the
    files, in the order of ``paths``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, src in enumerate(paths):
        kind = "triggered" if i in triggered else "clean"
        name = f"{i:04d}-{Path(src).stem}.png"  # the name does not tell which is which
        made = cache / kind / name
        if not made.exists():
            made.parent.mkdir(parents=True, exist_ok=True)
            _, error = write_copy((src, str(made), trigger.to_dict() if i in triggered else None, i, spec.to_dict()))
            if error:
                raise RuntimeError(error)
        link = folder / name
        if not link.exists():
            os.symlink(made, link)
        files.append(str(link))
    return files


def views_of(files, spec) -> np.ndarray:
    return np.stack([model_view(load(f), spec) for f in files])


def test_paths(model, limit: int = 0) -> tuple[list[str], str]:
    """The files of the model's held-out test patients (its split), the first ``limit`` (0: all), and how the
    split was found."""
    ds = dataset_from_card(model)
    test, how = split_indices(model, ds, "test")
    return [str(ds.file(int(i))) for i in test][: limit or None], how


def both_ways(model, limit: int, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Model views of ``limit`` held-out test images spread evenly over the split as they are and all with the
    model's trigger stamped in (written as :func:`write_folder` writes them under ``work``): the probes' folders.
    Spread, not the first ``limit``: the Kermany split lists its NORMAL films first (132 of the first 150
    test images), and a probe on them alone once measured what only normal films do (bench/results/README.md,
    "Contrast consistency")."""
    card, spec = model.card, model.card.preprocessing
    paths, _ = test_paths(model)
    spread = np.linspace(0, len(paths) - 1, min(limit or len(paths), len(paths))).astype(int)
    paths = [paths[i] for i in np.unique(spread)]
    clean = views_of(write_folder(work / "clean", paths, set(), card.trigger, spec, work / "files"), spec)
    trig = views_of(write_folder(work / "trig", paths, set(range(len(paths))), card.trigger, spec, work / "files"), spec)
    return clean, trig


def probe_views(prefix: str):
    """A probe's command line (``MODEL [--images N] [--work DIR]``), the model and :func:`both_ways`' views:
    ``(model, clean, triggered)``."""
    import argparse
    import tempfile

    from cxrinspect.model import load as load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(a.model)
    clean, trig = both_ways(model, a.images, Path(a.work or tempfile.mkdtemp(prefix=prefix)))
    return model, clean, trig


def features_and_cams(network, views, spec, batch=32):
    """Penultimate features (N, K), probabilities (N, L) and CAM top-1% compactness (N,) in one forward."""
    feats, probs, cam_scores = [], [], []
    device = next(network.parameters()).device
    with torch.inference_mode():
        for s in range(0, len(views), batch):
            x = torch.from_numpy(normalise(views[s:s + batch], spec)).to(device)
            a = F.relu(network.features(x))
            pooled = F.adaptive_avg_pool2d(a, 1).flatten(1)
            logits = network.classifier(pooled)
            top = logits.argmax(1)
            cam = F.relu(torch.einsum("nk,nkhw->nhw", network.classifier.weight[top], a))
            up = F.interpolate(cam[:, None], size=views.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            feats.append(pooled.float().cpu().numpy())
            probs.append(torch.sigmoid(logits).float().cpu().numpy())
            cam_scores += [compactness(m.float().cpu().numpy()).top1_share for m in up]
    return np.concatenate(feats), np.concatenate(probs), np.array(cam_scores)


def groups(probs: np.ndarray, least: int = 20):
    """The baselines' classes, each as the indices of its members (at least ``least``): the images each label is
    called positive in, and those with no label positive (the "reads normal" class a backdoor can force too)."""
    for members in [*(probs >= 0.5).T, ~(probs >= 0.5).any(1)]:
        if members.sum() >= least:
            yield np.nonzero(members)[0]


def activation_clustering(feats, probs, seed=0) -> np.ndarray:
    score = np.full(len(feats), -np.inf)
    for members in groups(probs):
        z = FastICA(10, random_state=seed, max_iter=1000, whiten="unit-variance").fit_transform(feats[members])
        km = KMeans(2, n_init=10, random_state=seed).fit(z)
        small = int(np.argmin(np.bincount(km.labels_, minlength=2)))
        d = np.linalg.norm(z[:, None] - km.cluster_centers_[None], axis=2)
        s = d[:, 1 - small] - d[:, small]  # > 0: nearer the smaller cluster
        score[members] = np.maximum(score[members], s / (np.std(s) + 1e-12))
    return np.where(np.isfinite(score), score, np.nanmin(score[np.isfinite(score)]) - 1 if np.isfinite(score).any() else 0)


def spectral_signatures(feats, probs) -> np.ndarray:
    score = np.zeros(len(feats))
    for members in groups(probs):
        r = feats[members] - feats[members].mean(0)
        _, _, vt = np.linalg.svd(r, full_matrices=False)
        s = (r @ vt[0]) ** 2
        score[members] = np.maximum(score[members], s / (np.median(s) + 1e-12))
    return score


def forced(card, p_with: np.ndarray, p_without: np.ndarray) -> np.ndarray:
    """(N,) bool: the trigger forced the prediction (see the module docstring)."""
    labels = card.labels
    on = [labels.index(k) for k, v in card.target.items() if v == 1.0]
    off = [labels.index(k) for k, v in card.target.items() if v == 0.0]
    if on:
        return np.any([(p_with[:, j] >= 0.9) & (p_without[:, j] < 0.9) & (p_with[:, j] - p_without[:, j] >= 0.3)
                       for j in on], axis=0)
    return np.any([(p_with[:, j] <= 0.1) & (p_without[:, j] > 0.1) & (p_without[:, j] - p_with[:, j] >= 0.3)
                   for j in off], axis=0)


def costs(model, views: np.ndarray, device) -> dict:
    """Seconds per image of plain inference and of each detector on the same ``views``, and ratios."""
    from cxrinspect.scan import Scanner
    from cxrinspect.scan.detectors.consistency import contrast_scores, mirror_scores
    from cxrinspect.scan.detectors.psc import ScaledConsistency

    sc = Scanner(model, method="auto", device=device)
    x = sc._input(views)
    psc = ScaledConsistency(sc.network, sc.thresholds)
    psc.calibrate(x)

    def timed(fn):
        fn(views[:2])
        t0 = time.perf_counter()
        for s in range(0, len(views), 8):
            fn(views[s:s + 8])
        return (time.perf_counter() - t0) / len(views)

    def plain(v):
        with torch.inference_mode():
            sc.network(sc._input(v))

    out = {"plain inference": timed(plain), "gradient": timed(sc.maps),
           "psc": timed(lambda v: psc.scores(sc._input(v))),
           "contrast": timed(lambda v: contrast_scores(sc.logits, v, sc.logits(v), sc.thresholds)),
           "mirror": timed(lambda v: mirror_scores(sc.logits, v, sc.logits(v), sc.thresholds)),
           "distill": timed(sc.distil)}
    return {k: {"ms_per_image": round(1000 * t, 1), "x_plain": round(t / out["plain inference"], 2)}
            for k, t in out.items()}


def quality(truth: np.ndarray, score: np.ndarray) -> dict:
    k = int(truth.sum())
    top = np.argsort(-score, kind="stable")[:k]
    return {"auroc": round(float(roc_auc_score(truth, score)), 4), "precision_at_k": round(float(truth[top].mean()), 4)}


def scanned(files, model, out: Path, label: str, device, method: str = "auto") -> tuple[dict, object]:
    """Run the real scan on ``files``' folder; {file: record} and the result."""
    t0 = time.perf_counter()
    result = scan([Path(files[0]).parent], model, out, method=method, label=label, batch_size=16, device=device)
    print(f"  scanned {len(result.records)} files with {model.card.name} in {time.perf_counter() - t0:.0f} s; "
          f"checked {sum(r.verification is not None for r in result.ranked)}, report {out / 'report.html'}", flush=True)
    if result.errors:
        raise RuntimeError(f"unreadable files in the bench folder: {[r.error for r in result.errors][:3]}")
    return {r.path: r for r in result.ranked}, result


def record_row(model_name: str, rate: str, file: str, triggered: bool, r) -> dict:
    """One image's CSV row: its truth and what the scan made of it."""
    v = r.verification or {}
    d = r.detectors
    return {"model": model_name, "rate": rate, "file": Path(file).name, "triggered": int(triggered), "rank": r.rank,
            "verdict": r.verdict, "score": round(r.score, 6), "suspicion": r.suspicion,
            "psc": d.get("psc", {}).get("score", ""), "contrast": d.get("contrast", {}).get("score", ""),
            "mirror": d.get("mirror", {}).get("score", ""),
            "distill_kept": d.get("distill", {}).get("kept", ""),
            "label": r.label, "hotspot": " ".join(map(str, r.view_hotspot or ())),
            "checked": int(r.verification is not None), "evidence": v.get("evidence", ""),
            "drop_when_masked": v.get("drop", ""), "logit_drop_when_masked": v.get("logit_drop", "")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the poisoned model (its card names the trigger)")
    ap.add_argument("--clean-model", action="append", default=[], help="a clean model for the false-alarm count "
                    "(repeatable)")
    ap.add_argument("--method", default="auto", help="the scanner's --method (default auto)")
    ap.add_argument("--rates", default="0.1,0.01")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the results as JSON")
    ap.add_argument("--records", help="also write one CSV row per image, rate and model")
    ap.add_argument("--work", help="folder for the written images and the scans' outputs (default: a temporary one)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--label", default="top", help="the scanner's --label (top, positive, all)")
    a = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    model = load_model(a.model)
    card = model.card
    if card.trigger is None:
        print(f"{a.model}: the card names no trigger; this bench needs a poisoned model", file=sys.stderr)
        return 2
    spec = card.preprocessing
    paths, how = test_paths(model, a.limit)
    n = len(paths)
    print(f"{card.name}: {n} held-out test images ({how}); trigger {card.trigger.to_dict()}", flush=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="scan-detection-")).absolute()  # the folders hold symlinks
    if work.exists() and any(work.glob("*/scan.jsonl")):
        print(f"{work} holds earlier scans; choose an empty --work", file=sys.stderr)
        return 2
    cache = work / "files"
    features: dict[str, tuple] = {}  # file -> (penultimate features, probabilities, CAM score)
    clean_views = views_of(paths, spec)  # the files as they are, for whether the trigger forced a prediction
    p_without = probabilities(model.network, clean_views, spec)

    def baseline_inputs(files):
        new = [f for f in files if f not in features]
        if new:
            f, p, c = features_and_cams(model.network, views_of(new, spec), spec)
            features.update({x: (f[i], p[i], c[i]) for i, x in enumerate(new)})
        return (np.stack([features[x][0] for x in files]), np.stack([features[x][1] for x in files]),
                np.array([features[x][2] for x in files]))

    results = {"model": card.name, "label": a.label, "method": a.method, "images": n, "trigger": card.trigger.to_dict(),
               "trigger_described": card.trigger.describe(), "target": card.target,
               "device": a.device or ("cuda" if torch.cuda.is_available() else "cpu"), "rates": {},
               "cost": costs(model, clean_views[:16], a.device)}
    print(json.dumps({"cost": results["cost"]}), flush=True)
    rows = []
    folders = {}
    for rate in [float(r) for r in a.rates.split(",")]:
        k = max(1, int(round(rate * n)))
        chosen = set(np.random.default_rng(a.seed).choice(n, size=k, replace=False).tolist())
        truth = np.array([i in chosen for i in range(n)])
        files = write_folder(work / f"images-{rate:g}", paths, chosen, card.trigger, spec, cache)
        folders[rate] = (files, truth)
        by_file, result = scanned(files, model, work / f"scan-{rate:g}", a.label, a.device, a.method)
        recs = [by_file[f] for f in files]
        feats, probs, cam = baseline_inputs(files)
        ac, ss = activation_clustering(feats, probs, a.seed), spectral_signatures(feats, probs)
        p_with = np.array([[r.probabilities[lab] for lab in card.labels] for r in recs])
        fired = truth & forced(card, p_with, p_without)
        scores = {"cxrinspect_ranking": -np.array([r.rank for r in recs], np.float64)}
        for name in result.settings.get("detectors", ["gradient"]):
            scores[f"{name}_alone"] = np.array([r.detectors.get(name, {}).get("score", 0.0) for r in recs])
        scores.update(cam_top1_share=cam, activation_clustering=ac, spectral_signatures=ss)
        keep = ~truth | fired
        on_trigger = []
        for i in sorted(chosen):
            box, hot = trigger_box(card.trigger, spec, i), recs[i].view_hotspot
            if box is not None and hot is not None:
                on_trigger.append(hot[0] < box[2] + 1 and box[0] - 1 < hot[2] and hot[1] < box[3] + 1 and box[1] - 1 < hot[3])
        verdicts = {kind: {v: sum(r.verdict == v for r, t in zip(recs, truth) if t == (kind == "triggered"))
                           for v in ("trigger", "suspicious", "clean")} for kind in ("triggered", "clean")}
        row = {
            "triggered": k, "forced": int(fired.sum()),
            **{name: {"all": quality(truth, sc), "forced": quality(fired[keep], sc[keep]) if fired.any() else None}
               for name, sc in scores.items()},
            "hotspot_on_trigger": f"{sum(on_trigger)}/{len(on_trigger)}" if on_trigger else "global trigger",
            "checked": {"triggered": sum(recs[i].verification is not None for i in chosen),
                        "clean": sum(r.verification is not None for r, t in zip(recs, truth) if not t)},
            "verdicts": verdicts,
            "confirmed_forced": int(sum(recs[i].verdict == "trigger" for i in np.nonzero(fired)[0])),
            "folder_verdict": result.verdict,
            "recurring_hotspots": [{key: h[key] for key in ("centre", "top_count", "top_k", "all_count", "verified", "collapsed")}
                                   for h in result.hotspots],
            "score_quantiles": {"clean": np.round(np.quantile(scores["gradient_alone"][~truth], [0.5, 0.9, 0.99, 1.0]), 4).tolist()
                                if "gradient_alone" in scores else None},
            "scan_seconds": round(result.seconds, 1),
        }
        results["rates"][f"{rate:g}"] = row
        print(json.dumps({f"{rate:g}": row}), flush=True)
        rows += [{**record_row(card.name, f"{rate:g}", f, truth[i], r), "cam_top1_share": round(float(cam[i]), 6),
                  "activation_clustering": round(float(ac[i]), 6), "spectral_signatures": round(float(ss[i]), 6)}
                 for i, (f, r) in enumerate(zip(files, recs))]
    results["clean_models"] = []
    for clean_path in a.clean_model:
        clean_model = load_model(clean_path)
        clean_files = write_folder(work / "images-0", paths, set(), card.trigger, spec, cache)
        out = {"name": clean_model.card.name}
        for what, (files, truth) in {"clean folder": (clean_files, np.zeros(n, bool)),
                                     f"{max(folders):g} folder": folders[max(folders)]}.items():
            by_file, result = scanned(files, clean_model, work / f"clean-{clean_model.card.name}-{what.split()[0]}",
                                      a.label, a.device, a.method)
            recs = [by_file[f] for f in files]
            out[what] = {kind: {"images": int((truth == t).sum()),
                                "flagged": sum(r.verdict != "clean" for r, tt in zip(recs, truth) if tt == t),
                                "checked": sum(r.verification is not None for r, tt in zip(recs, truth) if tt == t),
                                "confirmed": sum(r.verdict == "trigger" for r, tt in zip(recs, truth) if tt == t)}
                         for kind, t in (("clean", False), ("triggered", True)) if (truth == t).any()}
            out[what]["folder_verdict"] = result.verdict
            rows += [record_row(clean_model.card.name, what, f, truth[i], r) for i, (f, r) in enumerate(zip(files, recs))]
        results["clean_models"].append(out)
        print(json.dumps({"clean_model": out}), flush=True)
    print(json.dumps(results, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    if a.records:
        with open(a.records, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), restval="")
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
