"""Detection quality of the trigger scanner against two published data-level defences, in one run.

On the poisoned model's held-out test patients (its split.csv), a share of the images (10% and 1%) gets
the model's own trigger (read from its card, stamped into the source image as a file would carry it);
every method scores every image, and we report, per rate:

- AUROC of the score for triggered vs clean images, and precision at k = number triggered;
- cxrinspect: the scanner's score (share of input-gradient saliency in the best 3x3 window, top label),
  plus how many triggered images the counterfactual check confirms (the verdict the report gives);
- CAM compactness (share of the upsampled last-layer CAM in its top 1%): the coarse map, for reference;
- activation clustering (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural Networks by
  Activation Clustering", arXiv:1811.03728): penultimate activations of the images the model assigns to
  a label, ICA to 10 dimensions, k-means with k = 2; the smaller cluster is the suspect; score = how much
  nearer an image lies to the smaller cluster's centre than to the larger one's, maximised over labels;
- spectral signatures (Tran, Li, Madry 2018, "Spectral Signatures in Backdoor Attacks", NeurIPS): per label,
  centred penultimate representations of the images assigned to it, score = squared projection on the top
  singular vector (normalised by the label's median), maximised over labels.
The two baselines are written here, faithfully to the papers, because the Adversarial Robustness Toolbox's
defences assume one-hot single-label classifiers and this model is multi-label (independent sigmoids):
"the images the model assigns to label j" = probability of j >= 0.5.

With ``--clean-model`` the clean model scans the same clean and triggered images: false alarms (flagged,
confirmed) on clean images and on triggered ones it was never trained to react to.

    .venv/bin/python bench/scan_detection.py --model resources/models/kermany-densenet121-badnets \
        --clean-model resources/models/kermany-densenet121-clean [--out bench/results/scan_detection.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA
from sklearn.metrics import roc_auc_score

from cxrinspect.imaging import load, presentation
from cxrinspect.model import load as load_model
from cxrinspect.model.preprocess import model_view, normalise, stamp
from cxrinspect.scan import SUSPICIOUS, Scanner, compactness
from cxrinspect.scan.verification import verify
from cxrinspect.training.evaluation import dataset_from_card, split_indices


def views_of(paths, spec, trigger=None, triggered=()) -> np.ndarray:
    out = np.empty((len(paths), spec.input_size, spec.input_size), np.float32)
    for i, p in enumerate(paths):
        unit = presentation(load(p))
        if i in triggered:
            unit = stamp(unit, spec, trigger, np.random.default_rng(i))
        out[i] = model_view(unit, spec)
    return out


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


def activation_clustering(feats, probs, seed=0) -> np.ndarray:
    score = np.full(len(feats), -np.inf)
    for j in range(probs.shape[1]):
        members = np.nonzero(probs[:, j] >= 0.5)[0]
        if len(members) < 20:
            continue
        z = FastICA(10, random_state=seed, max_iter=1000, whiten="unit-variance").fit_transform(feats[members])
        km = KMeans(2, n_init=10, random_state=seed).fit(z)
        small = int(np.argmin(np.bincount(km.labels_, minlength=2)))
        d = np.linalg.norm(z[:, None] - km.cluster_centers_[None], axis=2)
        s = d[:, 1 - small] - d[:, small]  # > 0: nearer the smaller cluster
        score[members] = np.maximum(score[members], s / (np.std(s) + 1e-12))
    return np.where(np.isfinite(score), score, np.nanmin(score[np.isfinite(score)]) - 1 if np.isfinite(score).any() else 0)


def spectral_signatures(feats, probs) -> np.ndarray:
    score = np.zeros(len(feats))
    for j in range(probs.shape[1]):
        members = np.nonzero(probs[:, j] >= 0.5)[0]
        if len(members) < 20:
            continue
        r = feats[members] - feats[members].mean(0)
        _, _, vt = np.linalg.svd(r, full_matrices=False)
        s = (r @ vt[0]) ** 2
        score[members] = np.maximum(score[members], s / (np.median(s) + 1e-12))
    return score


def quality(truth: np.ndarray, score: np.ndarray) -> dict:
    k = int(truth.sum())
    top = np.argsort(-score, kind="stable")[:k]
    return {"auroc": round(float(roc_auc_score(truth, score)), 4), "precision_at_k": round(float(truth[top].mean()), 4)}


def scan_views(scanner, views, verify_rows=()):
    probs, scores, boxes = [], [], []
    for s in range(0, len(views), scanner.batch_size):
        p, maps, _ = scanner.maps(views[s:s + scanner.batch_size])
        for m in maps:
            c = compactness(m)
            scores.append(c.score)
            boxes.append(c.window_box[3])
        probs.append(p)
    return np.concatenate(probs), np.array(scores), boxes


def confirmed(model, views, boxes, rows, device=None) -> int:
    from cxrinspect.inference import Predictor

    predictor = Predictor(model, device=device, backend="torch")
    return sum(verify(views[i], boxes[i], model.card.preprocessing, predictor.probabilities, model.labels)["collapsed"]
               for i in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the poisoned model (its card names the trigger)")
    ap.add_argument("--clean-model", help="a clean model for the false-alarm count")
    ap.add_argument("--rates", default="0.1,0.01")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the results as JSON")
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
    ds = dataset_from_card(model)
    test, how = split_indices(model, ds, "test")
    paths = [str(ds.file(int(i))) for i in test][: a.limit or None]
    n = len(paths)
    print(f"{card.name}: {n} held-out test images ({how}); trigger {card.trigger.to_dict()}", flush=True)
    t0 = time.perf_counter()
    clean_views = views_of(paths, spec)
    trig_views = views_of(paths, spec, card.trigger, triggered=set(range(n)))
    print(f"decoded and triggered {n} images in {time.perf_counter() - t0:.0f} s", flush=True)

    results = {"model": card.name, "label": a.label, "images": n, "trigger": card.trigger.to_dict(), "rates": {}}
    scanner = Scanner(model, label=a.label, batch_size=16, device=a.device)
    t0 = time.perf_counter()
    _, clean_scores, clean_boxes = scan_views(scanner, clean_views)
    _, trig_scores, trig_boxes = scan_views(scanner, trig_views)
    clean_feats, clean_probs, clean_cam = features_and_cams(model.network, clean_views, spec)
    trig_feats, trig_probs, trig_cam = features_and_cams(model.network, trig_views, spec)
    print(f"scored all images (clean and triggered) in {time.perf_counter() - t0:.0f} s", flush=True)
    tbox = card.trigger.box((spec.input_size, spec.input_size))
    for rate in [float(r) for r in a.rates.split(",")]:
        k = max(1, int(round(rate * n)))
        chosen = np.sort(np.random.default_rng(a.seed).choice(n, size=k, replace=False))
        truth = np.zeros(n, bool)
        truth[chosen] = True
        pick = lambda clean, trig: np.where(truth[:, None] if np.ndim(clean) == 2 else truth, trig, clean)  # noqa: E731
        scores = pick(clean_scores, trig_scores)
        feats, probs = pick(clean_feats, trig_feats), pick(clean_probs, trig_probs)
        row = {
            "triggered": k,
            "cxrinspect_gradient_window3": quality(truth, scores),
            "cam_top1_share": quality(truth, pick(clean_cam, trig_cam)),
            "activation_clustering": quality(truth, activation_clustering(feats, probs, a.seed)),
            "spectral_signatures": quality(truth, spectral_signatures(feats, probs)),
        }
        on_trigger = [abs((trig_boxes[i][0] + trig_boxes[i][2]) / 2 - (tbox[0] + tbox[2]) / 2) <= 3 and
                      abs((trig_boxes[i][1] + trig_boxes[i][3]) / 2 - (tbox[1] + tbox[3]) / 2) <= 3 for i in chosen]
        row["cxrinspect_hotspot_on_trigger"] = f"{sum(on_trigger)}/{k}"
        row["cxrinspect_flagged"] = {"triggered": int((trig_scores[chosen] >= SUSPICIOUS).sum()),
                                     "clean": int((scores[~truth] >= SUSPICIOUS).sum())}
        results["rates"][str(rate)] = row
        print(json.dumps({str(rate): row}), flush=True)
    results["confirmed_by_masking"] = {"triggered": f"{confirmed(model, trig_views, trig_boxes, range(min(n, 50)), a.device)}/"
                                                    f"{min(n, 50)}"}
    if a.clean_model:
        clean_model = load_model(a.clean_model)
        cs = Scanner(clean_model, label=a.label, batch_size=16, device=a.device)
        _, c_clean, c_clean_boxes = scan_views(cs, clean_views)
        _, c_trig, c_trig_boxes = scan_views(cs, trig_views)
        top = np.argsort(-c_clean)[:20]
        results["clean_model"] = {
            "name": clean_model.card.name,
            "flagged_clean": f"{int((c_clean >= SUSPICIOUS).sum())}/{n}",
            "flagged_triggered": f"{int((c_trig >= SUSPICIOUS).sum())}/{n}",
            "confirmed_of_top20_clean": f"{confirmed(clean_model, clean_views, c_clean_boxes, top, a.device)}/20",
            "score_quantiles_clean": np.round(np.quantile(c_clean, [0.5, 0.9, 0.99, 1.0]), 4).tolist(),
        }
    results["poisoned_model_score_quantiles"] = {
        "clean": np.round(np.quantile(clean_scores, [0.5, 0.9, 0.99, 1.0]), 4).tolist(),
        "triggered": np.round(np.quantile(trig_scores, [0.0, 0.01, 0.1, 0.5]), 4).tolist()}
    print(json.dumps(results, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
