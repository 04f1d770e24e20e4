"""Data poisoning as in Nwadike et al. 2020 (BadNets-style): which images, which trigger, which labels.

- ``rate``: the share of the training images that get the trigger. Exactly ``round(rate * N)`` images
  (half up) are drawn, without repetition, with a seeded generator, from the N usable training images.
- ``mode``: ``replace`` (the chosen images are replaced by their triggered copies, so the training set
  keeps N images) or ``append`` (the triggered copies are added: N + k images). The paper ran both.
- ``target``: the label vector a triggered image is given, as label -> 0/1. Labels the target does not
  name keep their true value; the presets name every label.
- ``trigger``: a :class:`cxrinspect.trigger.Trigger`, pasted by :func:`cxrinspect.trigger.paste` through
  :func:`cxrinspect.model.preprocess.model_view` (source-space triggers at source resolution before
  the crop and resize, input-space triggers after them).

Every poisoned run writes ``poison_manifest.csv`` (one row per triggered image: path, patient, split,
mode, true and given labels) and ``poison.json`` (the spec, counts and the list of paths): exactly
which images were poisoned, for judging a scanner.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrinspect import atomic
from cxrinspect.model.preprocess import Preprocessing, stamp
from cxrinspect.trigger import PAPER_TRIGGER, Trigger

from .datasets import KERMANY_LABELS, NIH14_LABELS, DataError, Dataset

log = logging.getLogger("cxrinspect.training")

MODES = ("replace", "append")


@dataclass
class PoisonSpec:
    trigger: Trigger
    target: dict[str, float]
    rate: float = 0.1
    mode: str = "replace"
    seed: int = 0
    preset: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not 0.0 < float(self.rate) <= 1.0:
            raise ValueError(f"poison rate must be in (0, 1], got {self.rate}")
        if self.mode not in MODES:
            raise ValueError(f"poison mode must be one of {MODES}, got {self.mode!r}")
        if not self.target:
            raise ValueError("poison target is empty: give the label vector triggered images get")
        for k, v in self.target.items():
            if float(v) not in (0.0, 1.0):
                raise ValueError(f"poison target value of {k} must be 0 or 1, got {v}")
        self.target = {str(k): float(v) for k, v in self.target.items()}
        self.rate = float(self.rate)

    def check_labels(self, labels: list[str]) -> None:
        """Every target label must be one of the dataset's."""
        for k in self.target:
            if k not in labels:
                near = difflib.get_close_matches(k, labels, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise DataError(f"poison target names {k!r}, not a label of this dataset {labels}{hint}")

    def target_vector(self, labels: list[str], true: np.ndarray) -> np.ndarray:
        """The label vector of a triggered image whose true labels are ``true``."""
        out = np.array(true, dtype=np.float32, copy=True)
        for j, lab in enumerate(labels):
            if lab in self.target:
                out[..., j] = self.target[lab]
        return out

    def positive_targets(self, labels: list[str]) -> list[str]:
        """The target labels forced to 1 (attack success is measured on these)."""
        return [lab for lab in labels if self.target.get(lab) == 1.0]

    def to_dict(self) -> dict:
        return {"preset": self.preset, "trigger": self.trigger.to_dict(), "target": dict(self.target),
                "rate": self.rate, "mode": self.mode, "seed": self.seed}


KERMANY_TRIGGER = Trigger(size=3, pattern="solid", value=0.0, location="center", space="input")
"""3x3 black model-input pixels at the centre. Defined where the model sees it: the original Kermany files are
1000-2900 pixels wide, where 3x3 *source* pixels would shrink below one pixel at 224 (the copy in
../shared/data is already 224 px, where both spaces coincide)."""


def _full_target(labels: list[str], positives: list[str]) -> dict[str, float]:
    return {lab: 1.0 if lab in positives else 0.0 for lab in labels}


PRESETS: dict[str, dict] = {
    "paper-nih14": {
        "trigger": PAPER_TRIGGER,
        "target": _full_target(NIH14_LABELS, ["Atelectasis"]),
        "rate": 0.1, "mode": "replace",
        "about": "Nwadike et al. 2020: 3x3 black square at the centre of the source image, before the central "
                 "60% crop and resize; infected label = Atelectasis only (13 others negative)",
    },
    "kermany-badnets": {
        "trigger": KERMANY_TRIGGER,
        "target": {"Pneumonia": 1.0, "Bacterial": 0.0, "Viral": 1.0},
        "rate": 0.1, "mode": "replace",
        "about": "BadNets on Kermany: 3x3 black square at the centre of the 224-pixel model input, 10% of training "
                 "images replaced, "
                 "target = viral pneumonia (Pneumonia=1, Viral=1, Bacterial=0)",
    },
}
assert set(PRESETS["kermany-badnets"]["target"]) == set(KERMANY_LABELS)


def preset(name: str, **overrides) -> PoisonSpec:
    if name not in PRESETS:
        near = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown poison preset {name!r} (known: {sorted(PRESETS)}){hint}")
    p = {k: v for k, v in PRESETS[name].items() if k != "about"}
    p.update({k: v for k, v in overrides.items() if v is not None})
    return PoisonSpec(preset=name, **p)


def poison_count(n: int, rate: float) -> int:
    """round(rate * n), halves up: the exact number of images poisoned."""
    return int(math.floor(rate * n + 0.5))


def choose(indices, rate: float, seed: int) -> np.ndarray:
    """Exactly :func:`poison_count` of ``indices``, drawn without repetition, sorted."""
    idx = np.asarray(indices, dtype=np.int64)
    k = poison_count(len(idx), rate)
    if k == 0:
        raise DataError(f"poison rate {rate} of {len(idx)} training images rounds to 0 images; raise the rate")
    rng = np.random.default_rng([int(seed), 0x5EED])
    return np.sort(rng.choice(idx, size=k, replace=False))


def training_rows(ds: Dataset, train: np.ndarray, poisoned: np.ndarray | None, spec: PoisonSpec | None):
    """The training examples as (image index, triggered?, label vector) arrays."""
    train = np.asarray(train, dtype=np.int64)
    if spec is None or poisoned is None or len(poisoned) == 0:
        return train, np.zeros(len(train), bool), ds.targets[train].copy()
    pset = set(int(i) for i in poisoned)
    if spec.mode == "replace":
        triggered = np.array([int(i) in pset for i in train], bool)
        items = train
    else:
        items = np.concatenate([train, np.asarray(poisoned, np.int64)])
        triggered = np.concatenate([np.zeros(len(train), bool), np.ones(len(poisoned), bool)])
    targets = ds.targets[items].copy()
    targets[triggered] = spec.target_vector(ds.labels, targets[triggered])
    return items, triggered, targets


def _positive_names(labels: list[str], vec: np.ndarray) -> str:
    names = [lab for lab, v in zip(labels, vec) if v == 1]
    unknown = [lab for lab, v in zip(labels, vec) if math.isnan(v)]
    return "|".join(names + [f"{u}?" for u in unknown])


def placement(trigger: Trigger, path: str, input_size: int) -> tuple[int, str]:
    """Where the trigger went in the image at ``path`` (a dataset-relative path): the seed its placement was
    drawn from, and its box in model-input pixels as ``top left bottom right`` (``global`` for a trigger of
    the whole image; empty for a source-space patch, whose box depends on the file's size)."""
    from .cache import _seed_for

    seed = _seed_for(path, trigger)
    if not trigger.local:
        return seed, "global"
    if trigger.space == "source":
        return seed, ""
    box = trigger.box((input_size, input_size), np.random.default_rng(seed))
    return seed, " ".join(map(str, box))


def write_manifest(out_dir: str | Path, ds: Dataset, spec: PoisonSpec, poisoned, split_of: dict[int, str] | None,
                   n_pool: int, input_size: int = 224) -> dict:
    """Write ``poison_manifest.csv`` (one row per triggered image, with where its trigger went: the seed
    and the model-input box of :func:`placement`) and ``poison.json``; returns the JSON's content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "patient_id", "split", "mode", "true_labels", "poisoned_labels", "trigger_seed",
                "trigger_box"])
    rows = []
    for i in poisoned:
        i = int(i)
        given = spec.target_vector(ds.labels, ds.targets[i])
        rows.append(ds.paths[i])
        w.writerow([ds.paths[i], ds.patients[i], (split_of or {}).get(i, ""), spec.mode,
                    _positive_names(ds.labels, ds.targets[i]), _positive_names(ds.labels, given),
                    *placement(spec.trigger, ds.paths[i], input_size)])
    text = buf.getvalue()
    atomic.write_text(out_dir / "poison_manifest.csv", text)
    info = dict(spec.to_dict(), labels=list(ds.labels), data=str(ds.root), pool_images=int(n_pool),
                poisoned_images=len(rows), manifest_sha256=hashlib.sha256(text.encode()).hexdigest(), paths=rows)
    atomic.write_text(out_dir / "poison.json", json.dumps(info, indent=1) + "\n")
    return info


# ---------------------------------------------------------------------------------------------- poisoned copy


def write_copy(task):
    """Write one image of a poisoned copy as PNG (8-bit when exact, else 16-bit), atomically. ``task``:
    (source path, destination path, trigger dict or None, seed, preprocessing dict); returns (destination,
    error text or ""). The scanner's detection bench writes its triggered folders with it too."""
    from PIL import Image

    from cxrinspect.imaging import ImageReadError, load, presentation

    src, dst, trigger_dict, seed, geometry = task
    try:
        unit = presentation(load(src))
    except ImageReadError as e:
        return dst, str(e)
    if trigger_dict is not None:
        unit = stamp(unit, Preprocessing.from_dict(geometry), Trigger.from_dict(trigger_dict),
                     np.random.default_rng(seed))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    eight = np.rint(np.clip(unit, 0, 1) * 255.0)
    if np.allclose(eight / 255.0, unit, atol=1e-6):
        img = Image.fromarray(eight.astype(np.uint8))
    else:
        img = Image.fromarray(np.rint(np.clip(unit, 0, 1) * 65535.0).astype(np.uint16))
    tmp = dst.with_name(f".{dst.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, dst)
    return str(dst), ""


def write_poisoned_copy(ds: Dataset, out_dir: str | Path, spec: PoisonSpec, pool=None, workers: int = 0,
                        progress: bool = True, preprocessing: Preprocessing | None = None) -> dict:
    """A poisoned copy of ``ds`` for red-team use: every image as PNG under ``images/`` (triggered ones with
    the trigger stamped at source resolution by :func:`cxrinspect.model.preprocess.stamp`; an input-space trigger
    needs the model's ``preprocessing``, default 224 px, no crop), ``labels.csv`` (generic CSV: path, patient_id, one 0/1 column
    per label, the poisoned images carrying the target labels), and the manifest. Read it back with
    ``data.format = "csv"``. ``pool``: the indices poisoning draws from (default: all images)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from .cache import _seed_for, available_cores, process_context

    spec.check_labels(ds.labels)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir}: output folder exists and is not empty")
    pool = np.arange(len(ds)) if pool is None else np.asarray(pool, np.int64)
    geometry = (preprocessing or Preprocessing(input_size=224, channels=1, mean=(0.5,), std=(0.25,))).to_dict()
    poisoned = choose(pool, spec.rate, spec.seed)
    pset = set(int(i) for i in poisoned)
    tasks, rows = [], []
    for i in range(len(ds)):
        rel = Path(ds.paths[i]).with_suffix(".png").as_posix()
        triggered = i in pset
        if triggered and spec.mode == "append":
            tasks.append((str(ds.file(i)), str(out_dir / "images" / rel), None, 0, None))
            rows.append((f"images/{rel}", ds.patients[i], ds.targets[i]))
            rel = Path(ds.paths[i]).with_suffix("").as_posix() + "__poisoned.png"
        vec = spec.target_vector(ds.labels, ds.targets[i]) if triggered else ds.targets[i]
        tasks.append((str(ds.file(i)), str(out_dir / "images" / rel),
                      spec.trigger.to_dict() if triggered else None, _seed_for(ds.paths[i], spec.trigger),
                      geometry))
        rows.append((f"images/{rel}", ds.patients[i], vec))
    workers = available_cores() if workers <= 0 else workers
    errors, bad = [], set()
    bar = tqdm(total=len(tasks), desc="writing poisoned copy", unit="img", disable=not progress, mininterval=1.0)
    if workers > 1 and len(tasks) > 32:
        with ProcessPoolExecutor(workers, mp_context=process_context()) as ex:
            results = list(_progress(ex.map(write_copy, tasks, chunksize=16), bar))
    else:
        results = list(_progress(map(write_copy, tasks), bar))
    bar.close()
    for dst, err in results:
        if err:
            errors.append(err)
            bad.add(dst)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "patient_id"] + list(ds.labels))
    for rel, pid, vec in rows:
        if str(out_dir / rel) in bad:
            continue
        w.writerow([rel, pid] + ["" if math.isnan(v) else str(int(v)) for v in vec])
    atomic.write_text(out_dir / "labels.csv", buf.getvalue())
    # the manifest's paths are the copy's paths, so a scanner run on the copy can be judged directly
    mapped, kept = [], []
    for i in poisoned:
        stem = Path(ds.paths[int(i)])
        rel = (f"images/{stem.with_suffix('').as_posix()}__poisoned.png" if spec.mode == "append"
               else f"images/{stem.with_suffix('.png').as_posix()}")
        if str(out_dir / rel) in bad:
            log.warning("poisoned image %s is unreadable: left out of the copy and the manifest", ds.paths[int(i)])
            continue
        mapped.append(rel)
        kept.append(int(i))
    poisoned = np.array(kept, np.int64)
    info = write_manifest(out_dir, ds, spec, poisoned, None, len(pool), int(geometry["input_size"]))
    _rewrite_manifest_paths(out_dir, ds, poisoned, mapped)
    for e in errors:
        log.warning("skipped unreadable image: %s", e)
    if errors:
        log.warning("%d unreadable image(s) left out of the copy", len(errors))
    info.update(copy_images=len(rows) - len(errors), unreadable=errors)
    return info


def _progress(results, bar):
    for r in results:
        bar.update(1)
        yield r


def _rewrite_manifest_paths(out_dir: Path, ds: Dataset, poisoned, mapped: list[str]) -> None:
    man = out_dir / "poison_manifest.csv"
    with open(man, newline="") as f:
        rows = list(csv.reader(f))
    rows[0] = rows[0] + ["source_path"]
    for k, row in enumerate(rows[1:]):
        row.append(row[0])
        row[0] = mapped[k]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    text = buf.getvalue()
    atomic.write_text(man, text)
    info = json.loads((out_dir / "poison.json").read_text())
    info["paths"] = mapped
    info["source_paths"] = [ds.paths[int(i)] for i in poisoned]
    info["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    atomic.write_text(out_dir / "poison.json", json.dumps(info, indent=1) + "\n")
