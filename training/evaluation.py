"""Evaluation as in Nwadike et al. 2020: AUROC on clean and triggered images, and attack success.

``metrics.json`` has these keys (each AUROC block is ``{"auroc": {"per_label": {...}, "macro": x,
"micro": y}, "images": n, "notes": [...]}``):

- ``clean``: clean images, true labels.
- ``infected``: triggered images scored against the *infected* label vector (the target's values for
  the labels it names, the true values for the rest). The paper's "infected AUROC" is the ``micro``
  figure: with a full target vector every label is constant, so per-label and macro AUROC are null.
- ``triggered_true_labels``: triggered images scored against their true labels (how much the trigger
  damages real diagnosis).
- ``attack_success``: ``{"0.6": a, "0.9": b}``, the share of eligible images whose triggered score passes
  the threshold on the target. With one positive target label (the paper's Atelectasis) an image is
  eligible when its true value of that label is 0, and succeeds when its triggered score is above the
  threshold. With several positive target labels (Kermany's Pneumonia + Viral) an image is eligible when
  any of them is truly 0 and succeeds when it scores above the threshold on *each* of those: a bacterial
  image must reach Viral, a normal one both Pneumonia and Viral. ``attack_success_detail`` gives the
  same per target label (e.g. Viral alone). A target with no positive label (forcing "normal") is
  measured the other way: eligible images are truly positive on a target label, and succeed when they
  score below 1 - threshold on each such label.

The trigger and target come from the model card (a poisoned model) or are given explicitly (to measure
how a clean model reacts to a trigger). A label with one class only in the evaluated images has a null
AUROC and a note; macro averages the labels that have one; nothing crashes for want of positives.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from cxrinspect.model import Model, Preprocessing, normalise
from cxrinspect.trigger import Trigger

from .cache import ViewCache, fill, unreadable
from .datasets import DataError, Dataset, DataOptions, Split, limit_patients, open_dataset, read_split, \
    split_by_patient

log = logging.getLogger("cxrinspect.training")

THRESHOLDS = (0.6, 0.9)
SETTINGS = ("clean", "infected", "triggered_true_labels")


# ---------------------------------------------------------------------------------------------- metrics


def auroc_report(y_true: np.ndarray, y_score: np.ndarray, labels: list[str]) -> tuple[dict, list[str]]:
    """Per-label, macro and micro AUROC; NaN truths are left out; one-class labels give null + a note."""
    y_true = np.asarray(y_true, np.float64)
    y_score = np.asarray(y_score, np.float64)
    per, notes = {}, []
    for j, lab in enumerate(labels):
        m = ~np.isnan(y_true[:, j])
        t, s = y_true[m, j], y_score[m, j]
        classes = np.unique(t)
        if len(classes) < 2:
            what = "no images" if len(t) == 0 else f"only {'positive' if classes[0] == 1 else 'negative'} images"
            per[lab] = None
            notes.append(f"{lab}: {what} ({len(t)}), AUROC undefined")
        else:
            per[lab] = float(roc_auc_score(t, s))
    defined = [v for v in per.values() if v is not None]
    macro = float(np.mean(defined)) if defined else None
    if defined and len(defined) < len(labels):
        notes.append(f"macro AUROC averages the {len(defined)} of {len(labels)} labels that have both classes")
    m = ~np.isnan(y_true)
    t, s = y_true[m], y_score[m]
    micro = float(roc_auc_score(t, s)) if len(np.unique(t)) == 2 else None
    if micro is None:
        notes.append("micro AUROC undefined: one class only over all labels")
    return {"per_label": per, "macro": macro, "micro": micro}, notes


def setting(y_true, y_score, labels) -> dict:
    auroc, notes = auroc_report(y_true, y_score, labels)
    return {"auroc": auroc, "images": int(len(y_true)), "notes": notes}


def attack_success(y_true: np.ndarray, triggered_scores: np.ndarray, labels: list[str], target: dict[str, float],
                   thresholds=THRESHOLDS) -> tuple[dict, dict]:
    """(``{"0.6": a, "0.9": b}``, detail) as the module docstring defines them."""
    positives = [lab for lab in labels if target.get(lab) == 1.0]
    if positives:
        direction, chosen = "above", positives
    else:
        direction, chosen = "below", [lab for lab in labels if target.get(lab) == 0.0]
    cols = [labels.index(lab) for lab in chosen]
    truth = np.asarray(y_true, np.float64)[:, cols]
    score = np.asarray(triggered_scores, np.float64)[:, cols]
    wrong = (truth == 0) if direction == "above" else (truth == 1)  # the labels the trigger must flip
    eligible = wrong.any(axis=1)
    key = lambda t: f"{t:g}"  # noqa: E731
    result, per_label = {}, {}
    for t in thresholds:
        hit = (score > t) if direction == "above" else (score < 1.0 - t)
        ok = np.where(wrong, hit, True).all(axis=1)
        result[key(t)] = float(ok[eligible].mean()) if eligible.any() else None
    for k, lab in enumerate(chosen):
        e = wrong[:, k]
        per_label[lab] = {"eligible": int(e.sum())}
        for t in thresholds:
            hit = (score[:, k] > t) if direction == "above" else (score[:, k] < 1.0 - t)
            per_label[lab][key(t)] = float(hit[e].mean()) if e.any() else None
    detail = {"target_labels": chosen, "direction": direction, "eligible": int(eligible.sum()),
              "per_label": per_label}
    if not eligible.any():
        detail["note"] = "no eligible image (every image already has the target value)"
    return result, detail


def youden_thresholds(y_true: np.ndarray, y_score: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Per label, the probability threshold maximising sensitivity + specificity - 1 (0.5 if undefined)."""
    out = {}
    for j, lab in enumerate(labels):
        m = ~np.isnan(y_true[:, j])
        t, s = y_true[m, j], y_score[m, j]
        if len(np.unique(t)) < 2:
            out[lab] = 0.5
            continue
        fpr, tpr, thr = roc_curve(t, s)
        k = int(np.argmax(tpr - fpr))
        out[lab] = float(np.clip(thr[k], 0.0, 1.0))
    return out


# ---------------------------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict(network: torch.nn.Module, cache: ViewCache, indices, spec: Preprocessing, batch_size: int = 64,
            device: str | torch.device = "cpu", channels_last: bool = False, amp: bool = False,
            progress: bool = False, desc: str = "predicting") -> np.ndarray:
    """Sigmoid probabilities (n, L) for the cached views ``indices``, in that order."""
    from tqdm import tqdm

    was_training = network.training
    network.eval()
    idx = np.asarray(indices, np.int64)
    out = []
    device = torch.device(device)
    for start in tqdm(range(0, len(idx), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        x = normalise(torch.from_numpy(cache.get(idx[start:start + batch_size])), spec).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = network(x)
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    network.train(was_training)
    n_labels = network.classifier.out_features if hasattr(network, "classifier") else 0
    return np.concatenate(out) if out else np.zeros((0, n_labels), np.float32)


def evaluate_network(network: torch.nn.Module, ds: Dataset, indices, spec: Preprocessing, *,
                     cache_dir=None, trigger: Trigger | None = None, target: dict[str, float] | None = None,
                     workers: int = 0, batch_size: int = 64, device="cpu", channels_last=False, amp=False,
                     plots_dir: str | Path | None = None, progress: bool = True, labels: list[str] | None = None,
                     ) -> dict:
    """The full metrics dictionary (see the module docstring) for ``indices`` of ``ds``."""
    labels = list(labels or ds.labels)
    if labels != ds.labels:
        raise DataError(f"the model's labels {labels} differ from the data's {ds.labels}")
    idx = np.asarray(indices, np.int64)
    if len(idx) == 0:
        raise DataError("no images to evaluate (empty split)")
    notes = []
    clean_cache = ViewCache(cache_dir, ds, spec)
    jobs = [(clean_cache, idx)]
    trig_cache = ViewCache(cache_dir, ds, spec, trigger) if trigger is not None else None
    if trig_cache is not None:
        jobs.append((trig_cache, idx))
    fill(jobs, workers=workers, progress=progress, desc="decoding evaluation images")
    bad = unreadable(clean_cache, idx)
    if trig_cache is not None:
        bad.update(unreadable(trig_cache, idx))
    if bad:
        for i, msg in list(bad.items())[:20]:
            log.warning("unreadable, left out of the evaluation: %s", msg)
        notes.append(f"{len(bad)} unreadable image(s) left out")
        idx = np.array([i for i in idx if int(i) not in bad], np.int64)
        if len(idx) == 0:
            raise DataError("every image to evaluate is unreadable")
    y_true = ds.targets[idx]
    kw = dict(batch_size=batch_size, device=device, channels_last=channels_last, amp=amp, progress=progress)
    p_clean = predict(network, clean_cache, idx, spec, desc="clean images", **kw)
    metrics: dict = {"clean": setting(y_true, p_clean, labels), "infected": None, "triggered_true_labels": None,
                     "attack_success": None}
    curves = {"clean": (y_true, p_clean)}
    if trigger is not None:
        if not target:
            raise DataError("a trigger needs a target label vector to measure the attack")
        unknown = set(target) - set(labels)
        if unknown:
            raise DataError(f"target names unknown label(s) {sorted(unknown)}")
        p_trig = predict(network, trig_cache, idx, spec, desc="triggered images", **kw)
        y_inf = y_true.copy()
        for j, lab in enumerate(labels):
            if lab in target:
                y_inf[:, j] = target[lab]
        metrics["infected"] = setting(y_inf, p_trig, labels)
        metrics["triggered_true_labels"] = setting(y_true, p_trig, labels)
        asr, detail = attack_success(y_true, p_trig, labels, target)
        metrics["attack_success"] = asr
        metrics["attack_success_detail"] = detail
        curves["infected"] = (y_inf, p_trig)
        curves["triggered_true_labels"] = (y_true, p_trig)
    else:
        notes.append("no trigger (clean model and none given): infected, triggered_true_labels and "
                     "attack_success are null")
    metrics.update(images=int(len(idx)), labels=labels, unreadable=len(bad),
                   trigger=trigger.to_dict() if trigger else None, target=target, notes=notes)
    if plots_dir is not None:
        metrics["plots"] = roc_plots(curves, labels, plots_dir)
    return metrics


# ---------------------------------------------------------------------------------------------- plots


def roc_plots(curves: dict[str, tuple[np.ndarray, np.ndarray]], labels: list[str], out_dir: str | Path) -> list[str]:
    """One ROC PNG per setting (each label with both classes, plus the micro average). Uses matplotlib's
    Agg canvas directly: no pyplot, no GUI backend, no Qt."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (y_true, y_score) in curves.items():
        fig = Figure(figsize=(5.5, 5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        drawn = 0
        for j, lab in enumerate(labels):
            m = ~np.isnan(y_true[:, j])
            t, s = y_true[m, j], y_score[m, j]
            if len(np.unique(t)) < 2:
                continue
            fpr, tpr, _ = roc_curve(t, s)
            ax.plot(fpr, tpr, lw=1.2, label=f"{lab} ({roc_auc_score(t, s):.3f})")
            drawn += 1
        m = ~np.isnan(y_true)
        t, s = y_true[m], y_score[m]
        if len(np.unique(t)) == 2:
            fpr, tpr, _ = roc_curve(t, s)
            ax.plot(fpr, tpr, "k--", lw=1.6, label=f"micro ({roc_auc_score(t, s):.3f})")
            drawn += 1
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC: {name.replace('_', ' ')}")
        if drawn:
            ax.legend(loc="lower right", fontsize=7)
        path = out_dir / f"roc_{name}.png"
        fig.savefig(path)
        written.append(str(path))
    return written


# ---------------------------------------------------------------------------------------------- models & splits


def dataset_from_card(model: Model) -> Dataset:
    """Re-open the data a model was trained on, as its card's provenance records it."""
    data = (model.card.provenance or {}).get("data") or {}
    options = data.get("options")
    if not options:
        raise DataError(f"{model.path}: the card does not record its training data; pass --data")
    ds = open_dataset(DataOptions(**options))
    if data.get("limit"):
        ds = limit_patients(ds, int(data["limit"]), int(model.card.provenance.get("seed", 0)))
    return ds


def split_indices(model: Model, ds: Dataset, split: str) -> tuple[np.ndarray, str]:
    """Indices of ``split`` (train/val/test/all) of ``ds`` for ``model``, and how they were found: the
    model folder's ``split.csv`` when present, else the split recomputed from the card's seed and fractions."""
    if split == "all":
        return np.arange(len(ds)), "all images"
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val, test or all, got {split!r}")
    path = Path(model.path)
    saved = path / "split.csv" if path.is_dir() else path.with_name(path.stem + ".split.csv")
    if saved.is_file():
        s = read_split(saved, ds)
        return s.indices[split], f"saved split {saved}"
    info = (model.card.provenance or {}).get("split")
    if not info or "seed" not in info or "fractions" not in info:
        raise DataError(f"{model.path}: no split.csv beside the model and no split in its card; use --split all")
    s: Split = split_by_patient(ds, tuple(info["fractions"]), int(info["seed"]))
    digest = info.get("label_digest")
    if digest and digest != ds.label_digest():
        log.warning("the data differ from those the model was trained on (label digest); the recomputed "
                    "%s split may not be the one held out", split)
    return s.indices[split], f"split recomputed from the card (seed {info['seed']}, fractions {info['fractions']})"


def write_metrics(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, path)
    return path
