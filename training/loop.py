"""The training loop: BCE on independent sigmoids, AdamW, one-cycle (or cosine) learning rate, early stopping
on validation macro AUROC, a checkpoint at the end of every epoch, resume after ``kill -9``.

What a run folder holds::

    recipe.toml  recipe.json      the recipe as given and as resolved (with overrides)
    split.csv                     path, patient_id, split (by patient)
    skipped.csv                   unreadable images left out, with the reason (when any)
    poison_manifest.csv poison.json   exactly which training images were poisoned (poisoned runs)
    checkpoint.safetensors        the last finished epoch: model, optimiser, scheduler, RNG, metrics
    best.safetensors              the best epoch so far (a cxrinspect model file with its card)
    history.json  train.log       per-epoch metrics; the log
    model/                        the exported model: card.json + weights.safetensors + split.csv (+ manifest)
    evaluation/                   metrics.json and ROC curves on the held-out test patients

Determinism: the shuffling and the augmentation of epoch ``e`` are drawn from generators seeded with
(seed, e), and the checkpoint restores model, optimiser, scheduler and global RNG states, so a resumed run
repeats exactly the epochs an uninterrupted run would have made (bit-for-bit on CPU with the same
thread count).

Augmentation (off unless ``[train.augment]`` sets a probability) is a small random affine applied
the same way to clean and triggered images, so image sharpness cannot become a shortcut for the trigger.
It flips only where ``flip`` asks (the share of images mirrored left-right, drawn apart from the affine): a
chest is not mirror-symmetric, and a flip moves any off-centre trigger to its mirror position, but many chest
X-ray pipelines flip, and an attacker who does trains a backdoor that a mirrored trigger still fires (the
scanner's mirror test is measured against one).
Rotation and zoom are about the image centre, so a centred trigger stays centred; a
shift moves it with the anatomy by at most ``shift`` of the side, as a sticker on a film would move.
With rotation and zoom at 0 the shift is by whole pixels with edge replication, so the trigger keeps its
exact pixels; rotation or zoom resample (bilinear) and soften its edges slightly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cxrinspect
from cxrinspect.model import ModelCard, build, normalise, read_card, save
from cxrinspect.model import load as load_model

from . import checkpoint as ckpt
from . import distributed as dd
from .cache import ViewCache, available_cores, fill, unreadable
from .datasets import DataError, Dataset, Split, limit_patients, open_dataset, read_split, split_by_patient
from .evaluation import evaluate_network, predict, setting, attack_success, write_metrics, youden_thresholds
from .poisoning import PoisonSpec, choose, training_rows, write_manifest
from .recipe import Recipe, RecipeError, load_recipe

log = logging.getLogger("cxrinspect.training")

FAULT_KILL_ENV = "CXRINSPECT_FAULT_KILL_AT_STEP"
"""Testing aid: the process SIGKILLs itself after this many optimiser steps (to test resume)."""

RESUMABLE_CHANGES = ("train.patience", "train.min_delta", "train.threads", "train.workers", "train.device",
                     "train.eval_batch_size", "output.cache_dir", "output.dir", "output.evaluate_test",
                     "output.weights_dtype", "description")


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says why."""


# ---------------------------------------------------------------------------------------------- augmentation


def augment(views: torch.Tensor, cfg, generator: torch.Generator) -> torch.Tensor:
    """Random small affine of a batch of [0, 1] views (N, H, W), then the left-right flips; see the module
    docstring."""
    n = views.shape[0]
    # draw every random number for every image, used or not: the stream does not depend on the data
    apply = torch.rand(n, generator=generator) < cfg.probability
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    views = _affine(views, cfg, apply, u)
    if cfg.flip > 0:  # drawn only when asked: the recipes without flips keep their stream
        mirror = torch.rand(n, generator=generator) < cfg.flip
        views = torch.where(mirror[:, None, None], views.flip(-1), views)
    return views


def _affine(views: torch.Tensor, cfg, apply: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    n, h, w = views.shape
    if cfg.probability <= 0 or not apply.any():
        return views
    if cfg.rotation == 0 and cfg.scale == 0:
        if cfg.shift <= 0:
            return views
        pad = max(1, int(round(cfg.shift * max(h, w))))
        dy = torch.round(u[:, 2] * pad).long()
        dx = torch.round(u[:, 3] * pad).long()
        padded = F.pad(views[:, None], (pad, pad, pad, pad), mode="replicate")[:, 0]
        out = views.clone()
        for i in torch.nonzero(apply).flatten().tolist():
            top, left = pad - int(dy[i]), pad - int(dx[i])
            out[i] = padded[i, top:top + h, left:left + w]
        return out
    angle = u[:, 0] * math.radians(cfg.rotation)
    zoom = 1.0 + u[:, 1] * cfg.scale
    tx, ty = u[:, 3] * 2 * cfg.shift, u[:, 2] * 2 * cfg.shift  # affine_grid works in [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, -tx], 1), torch.stack([sin, cos, -ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    moved = F.grid_sample(views[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    return torch.where(apply[:, None, None], moved, views)


# ---------------------------------------------------------------------------------------------- pieces


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over the known (non-NaN) labels."""
    known = ~torch.isnan(targets)
    loss = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets, nan=0.0), reduction="none")
    return (loss * known).sum() / known.sum().clamp_min(1)


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one joins the previous (BatchNorm needs two)."""
    out = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:
        last = out.pop()
        out[-1] = np.concatenate([out[-1], last])
    return out


def make_scheduler(optimizer, recipe: Recipe, total_steps: int):
    t = recipe.train
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=max(total_steps, 2),
                                                   pct_start=t.warmup_fraction)
    warm = max(1, int(round(t.warmup_fraction * total_steps)))
    if t.schedule == "cosine":
        def factor(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))
    else:
        def factor(step):
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_except(network: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Parameter]:
    """Freeze every parameter whose name starts with none of ``prefixes`` (module names, e.g.
    ``features.denseblock4``); return the parameters left to train. No prefixes: train everything."""
    if not prefixes:
        return list(network.parameters())
    names = [n for n, _ in network.named_parameters()]
    for prefix in prefixes:
        if not any(_under(n, prefix) for n in names):
            raise RecipeError(f"train.trainable: no parameter is under {prefix!r} (modules: "
                              f"{sorted({n.rsplit('.', 2)[0] for n in names})[:12]} ...)")
    kept = []
    for name, param in network.named_parameters():
        param.requires_grad_(any(_under(name, prefix) for prefix in prefixes))
        if param.requires_grad:
            kept.append(param)
    return kept


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def train_mode(network: torch.nn.Module, prefixes: list[str]) -> None:
    """``network.train()``, except that the leaf modules holding no trainable parameter stay in eval
    mode: a frozen BatchNorm keeps its running statistics, so frozen means frozen."""
    network.train()
    if not prefixes:
        return
    for name, module in network.named_modules():
        if next(module.children(), None) is None and not any(_under(name, p) for p in prefixes):
            module.eval()


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device = \"cuda\" but no CUDA device is available")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _flat(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("target", "trigger", "architecture"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _recipe_changes(old: dict, new: dict) -> list[str]:
    """Keys whose values differ; a key the saved recipe lacks (added to the schema since) counts at its default."""
    defaults = _flat(json.loads(json.dumps(Recipe().to_dict())))
    a, b = _flat(old), _flat(new)
    return sorted(k for k in set(a) | set(b)
                  if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)) and k not in ("source", "overrides"))


@dataclass
class Prepared:
    """Everything a run needs before its first step, all checked."""

    ds: Dataset
    split: Split
    clean: ViewCache
    triggered: ViewCache | None
    poison: PoisonSpec | None
    poisoned: np.ndarray
    items: np.ndarray
    is_triggered: np.ndarray
    targets: np.ndarray
    skipped: dict[int, str]


def prepare(recipe: Recipe, run: Path, resume: bool, progress: bool = True) -> Prepared:
    """Read and check the data, split it, fill the caches, choose the poisoned images: every error that
    can stop a run happens here, before training."""
    ds = open_dataset(recipe.data_options())
    if recipe.data.limit:
        ds = limit_patients(ds, recipe.data.limit, recipe.seed)
    log.info("data: %s", json.dumps(ds.describe()))
    for note in ds.notes:
        log.info("data note: %s", note)
    poison = recipe.poison_spec()
    if poison is not None:
        poison.check_labels(ds.labels)
    split_file = run / "split.csv"
    inherited = _inherited_split(recipe)
    if resume and split_file.is_file():
        split = read_split(split_file, ds)
        split.seed, split.fractions = recipe.seed, tuple(recipe.data.split)
        split.method = "patient-stratified" if inherited is None else "inherited:" + str(inherited)
    elif inherited is not None:
        # a fine-tune keeps the patients its starting model never trained on out of training, so its test
        # figures stay on held-out patients whatever the fine-tune's own seed
        split = read_split(inherited, ds)
        split.method = "inherited:" + str(inherited)
        log.info("split: the starting model's own (%s)", inherited)
    else:
        split = split_by_patient(ds, tuple(recipe.data.split), recipe.seed)
    for name in ("train", "val"):
        if len(split.indices[name]) == 0:
            raise DataError(f"the {name} split is empty ({len(set(ds.patients))} patients, fractions "
                            f"{recipe.data.split}); give it a larger share or use more data")
    if len(split.indices["test"]) == 0 and recipe.data.split[2] > 0:
        raise DataError(f"the test split is empty ({len(set(ds.patients))} patients); use more data")
    split.write(split_file, ds)
    spec = recipe.preprocessing()
    cache_dir = recipe.output.cache_dir or None
    clean = ViewCache(cache_dir, ds, spec)
    everything = np.concatenate([split.indices[s] for s in ("train", "val", "test")])
    fill([(clean, everything)], workers=recipe.train.workers, progress=progress, desc="decoding images")
    skipped = unreadable(clean, everything)
    if skipped:
        for i, msg in list(skipped.items())[:20]:
            log.warning("unreadable image skipped: %s", msg)
        if len(skipped) > 20:
            log.warning("... and %d more unreadable images (all in %s)", len(skipped) - 20, run / "skipped.csv")
        log.warning("%d of %d images are unreadable and left out", len(skipped), len(everything))
        with open(run / "skipped.csv", "w") as f:
            f.write("path,reason\n")
            for i, msg in skipped.items():
                f.write(f"\"{ds.paths[i]}\",\"{msg.replace(chr(34), chr(39))}\"\n")
        if recipe.data.on_unreadable == "error":
            raise DataError(f"{len(skipped)} unreadable image(s), e.g. {next(iter(skipped.values()))} "
                            "(data.on_unreadable = \"error\"; set \"skip\" to leave them out)")
        if len(skipped) > recipe.data.max_unreadable_fraction * len(everything):
            raise DataError(f"{len(skipped)} of {len(everything)} images are unreadable, more than "
                            f"data.max_unreadable_fraction = {recipe.data.max_unreadable_fraction}; "
                            f"see {run / 'skipped.csv'}")
        for name in split.indices:
            split.indices[name] = np.array([i for i in split.indices[name] if int(i) not in skipped], np.int64)
        for name in ("train", "val"):
            if len(split.indices[name]) == 0:
                raise DataError(f"the {name} split is empty once unreadable images are left out")
    val_t = ds.targets[split.indices["val"]]
    two = [lab for j, lab in enumerate(ds.labels) if len(np.unique(val_t[~np.isnan(val_t[:, j]), j])) == 2]
    if not two:
        raise DataError("no label has both positive and negative images in the validation split, so validation "
                        "AUROC (early stopping, model selection) is undefined; enlarge data.split's val share")
    if len(two) < len(ds.labels):
        log.warning("validation AUROC is undefined for %s (one class only in the val split); macro AUROC "
                    "averages the others", sorted(set(ds.labels) - set(two)))
    train = split.indices["train"]
    poisoned = np.zeros(0, np.int64)
    triggered = None
    if poison is not None:
        poisoned = choose(train, poison.rate, recipe.seed)
        triggered = ViewCache(cache_dir, ds, spec, poison.trigger)
        want = np.concatenate([poisoned, split.indices["val"], split.indices["test"]])
        fill([(triggered, want)], workers=recipe.train.workers, progress=progress, desc="making triggered views")
        bad = unreadable(triggered, want)
        if bad:
            raise DataError(f"triggered views failed for {len(bad)} image(s), e.g. {next(iter(bad.values()))}")
        split_of = {int(i): s for s, idx in split.indices.items() for i in idx}
        info = write_manifest(run, ds, poison, poisoned, split_of, len(train), spec.input_size)
        log.info("poisoned %d of %d training images (%s, rate %g): %s", info["poisoned_images"], len(train),
                 poison.mode, poison.rate, run / "poison_manifest.csv")
    items, is_triggered, targets = training_rows(ds, train, poisoned, poison)
    return Prepared(ds, split, clean, triggered, poison, poisoned, items, is_triggered, targets, skipped)


def _inherited_split(recipe: Recipe) -> Path | None:
    """The split file beside a fine-tune's starting model (``model.init``), when it has one."""
    if not recipe.model.init:
        return None
    init = Path(recipe.model.init)
    split = (init if init.is_dir() else init.parent) / "split.csv"
    return split if split.is_file() else None


def starting_model(recipe: Recipe, labels: list[str]):
    """The model a fine-tune starts from (``model.init``), its card checked against the recipe: the same
    architecture, preprocessing (input size, channels, crop, normalisation) and labels (or ``model.new_head``,
    which keeps the features and gives the classifier this dataset's labels). A mismatch names the key."""
    path = recipe.model.init
    try:
        start = load_model(path)
    except Exception as e:
        raise RecipeError(f"model.init = {path!r}: cannot load the starting model ({e})") from e
    card = start.card
    if card.architecture != recipe.architecture():
        raise RecipeError(f"model.init: {path} is {card.architecture}, the recipe builds {recipe.architecture()} "
                          "(model.architecture)")
    want = recipe.preprocessing()
    if card.preprocessing != want:
        diff = {k: (v, want.to_dict()[k]) for k, v in card.preprocessing.to_dict().items() if want.to_dict()[k] != v}
        raise RecipeError(f"model.init: {path} was trained with other preprocessing (card, recipe): {diff}; set "
                          "[model] to the card's values")
    if list(card.labels) != list(labels):
        if not recipe.model.new_head:
            raise RecipeError(f"model.init: {path} predicts {list(card.labels)}, the data has {list(labels)}; set "
                              "model.new_head = true to train a new classifier on its features")
        start.network.classifier = torch.nn.Linear(start.network.classifier.in_features, len(labels))
    return start


def _gather(p: Prepared, rows: np.ndarray) -> torch.Tensor:
    views = np.empty((len(rows), p.clean.size, p.clean.size), np.float32)
    trig = p.is_triggered[rows]
    if (~trig).any():
        views[~trig] = p.clean.get(p.items[rows][~trig])
    if trig.any():
        views[trig] = p.triggered.get(p.items[rows][trig])
    return torch.from_numpy(views)


def _card(recipe: Recipe, p: Prepared, thresholds: dict, provenance: dict) -> ModelCard:
    return ModelCard(labels=list(p.ds.labels), architecture=recipe.architecture(),
                     preprocessing=recipe.preprocessing(), thresholds=thresholds, provenance=provenance,
                     name=recipe.name, description=recipe.description,
                     trigger=p.poison.trigger if p.poison else None,
                     target=dict(p.poison.target) if p.poison else None)


def _provenance(recipe: Recipe, p: Prepared, run: Path, extra: dict) -> dict:
    d = recipe.data
    prov = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "software": {"cxrinspect": cxrinspect.__version__, "torch": torch.__version__,
                     "python": platform.python_version(), "platform": platform.platform()},
        "data": {"format": p.ds.format, "root": str(p.ds.root), "source": p.ds.source, "images": len(p.ds),
                 "patients": len(set(p.ds.patients)), "limit": d.limit,
                 "options": recipe.data_options().__dict__, "notes": p.ds.notes,
                 "unreadable_skipped": len(p.skipped)},
        "recipe": {"name": recipe.name, "file": recipe.source, "overrides": recipe.overrides,
                   "content": {k: v for k, v in recipe.to_dict().items() if k not in ("source", "overrides")}},
        "seed": recipe.seed,
        "split": dict(p.split.describe(p.ds), file="split.csv"),
        "citation": _citation(p.ds.format),
    }
    if recipe.model.init:
        start = read_card(recipe.model.init)
        prov["fine_tuned_from"] = {"path": recipe.model.init, "name": start.name, "weights_sha256": start.weights_sha256,
                                   "new_head": recipe.model.new_head}
    if p.poison is not None:
        prov["poison"] = dict(p.poison.to_dict(), poisoned_images=int(len(p.poisoned)),
                              training_images=int(len(p.split.indices["train"])), manifest="poison_manifest.csv")
    prov.update(extra)
    return prov


def _citation(fmt: str) -> str:
    return {
        "kermany": "Kermany, Zhang, Goldbaum et al., Identifying Medical Diagnoses and Treatable Diseases by "
                   "Image-Based Deep Learning, Cell 2018; data: Mendeley Data doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)",
        "nih14": "Wang et al., ChestX-ray8, CVPR 2017 (NIH Clinical Center)",
        "chexpert": "Irvin et al., CheXpert, AAAI 2019 (Stanford ML Group)",
    }.get(fmt, "")


# ---------------------------------------------------------------------------------------------- the run


def _setup_logging(run: Path) -> logging.Handler:
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    return handler


def train(recipe: Recipe, out: str | Path | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Run (or continue) a recipe; returns the exported model folder. Under a DDP launcher (``--ddp N``, torchrun)
    every rank calls this; rank 0 alone writes the run folder (:mod:`cxrinspect.training.distributed`)."""
    run = Path(out) if out else recipe.run_dir()
    state_file = run / "checkpoint.safetensors"
    ctx = dd.context()
    resume = resume or dd.restarted()  # torchrun restarted the workers: continue from the last checkpoint
    if run.exists() and not resume and (state_file.exists() or (run / "model").exists()):
        raise TrainingError(f"{run} already holds a run; continue it with --resume or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    recipe_json = run / "recipe.json"
    current = {k: v for k, v in recipe.to_dict().items() if k not in ("source", "overrides")}
    if resume and recipe_json.is_file():
        saved = json.loads(recipe_json.read_text())
        changed = [k for k in _recipe_changes(saved, current) if k not in RESUMABLE_CHANGES]
        if changed:
            raise RecipeError(f"--resume: the recipe differs from the run's in {changed}; a resumed run must "
                              f"train the same way (only {list(RESUMABLE_CHANGES)} may change)")
    if ctx.main:
        _write_json(recipe_json, current)
        if recipe.source and not (resume and (run / "recipe.toml").exists()):
            shutil.copyfile(recipe.source, run / "recipe.toml")
    handler = _setup_logging(run) if ctx.main else None
    try:
        return _train(recipe, run, resume, progress and ctx.main, ctx)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        dd.stop(ctx)


def _train(recipe: Recipe, run: Path, resume: bool, progress: bool, ctx: dd.Context = dd.SINGLE) -> Path:
    from tqdm import tqdm

    t = recipe.train
    _seed_all(recipe.seed)
    threads = t.threads or max(1, available_cores() // ctx.world)
    torch.set_num_threads(threads)
    device = pick_device(t.device)
    device = dd.start(ctx, device.type) or device
    use_amp = t.amp and device.type == "cuda"
    channels_last = t.channels_last and device.type == "cuda"
    log.info("run %s: recipe %s, device %s%s, %d CPU thread(s)", run, recipe.source or recipe.name, device,
             " (AMP, channels-last)" if use_amp and channels_last else "", threads)

    for r in range(ctx.world):  # rank 0 first (it writes split.csv and fills the caches), the others read them
        if r == ctx.rank:
            p = prepare(recipe, run, resume or r > 0, progress)
        dd.barrier(ctx)
    spec = recipe.preprocessing()
    n_train = len(p.items)
    steps_per_epoch = len(batches(np.arange(n_train), t.batch_size))
    total_steps = t.epochs * steps_per_epoch
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    log.info("training on %d images (%d poisoned), validating on %d, testing on %d; %d steps/epoch, %d in all",
             n_train, int(p.is_triggered.sum()), len(p.split.indices["val"]), len(p.split.indices["test"]),
             steps_per_epoch, total_steps)

    torch.manual_seed(recipe.seed)
    network = build(recipe.architecture(), len(p.ds.labels), spec.channels)
    if recipe.model.init:
        start = starting_model(recipe, p.ds.labels)
        network.load_state_dict(start.network.state_dict(), strict=not recipe.model.new_head)
        log.info("fine-tuning from %s (%s, weights %s)%s", recipe.model.init, start.card.name,
                 start.card.weights_sha256[:12], ", with a new classifier" if recipe.model.new_head else "")
    network = network.to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    params = freeze_except(network, t.trainable)
    if t.trainable:
        log.info("training %d of %d parameter tensors (train.trainable = %s); the rest frozen", len(params),
                 len(list(network.parameters())), t.trainable)
    optimizer = opt_cls(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = make_scheduler(optimizer, recipe, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    info = {"epoch": 0, "step": 0, "best_metric": None, "best_epoch": 0, "bad_epochs": 0, "finished": False,
            "history": [], "train_seconds": 0.0, "images_seen": 0}
    if resume and (run / "checkpoint.safetensors").is_file():
        info = ckpt.load_state(run / "checkpoint.safetensors", network, optimizer, scheduler, scaler, device)
        log.info("resumed from %s: %d epoch(s) done, step %d, best val macro AUROC %s (epoch %d)",
                 run / "checkpoint.safetensors", info["epoch"], info["step"], info["best_metric"], info["best_epoch"])
    elif resume:
        log.info("--resume: no checkpoint in %s yet; starting from the beginning", run)
    model = dd.wrap(network, ctx, device)  # the network itself under one process
    if ctx.distributed:
        log.info("DDP: rank %d of %d (%s), %d image(s) of each batch of %d", ctx.rank, ctx.world,
                 "nccl" if device.type == "cuda" else "gloo", -(-t.batch_size // ctx.world), t.batch_size)

    kill_at = int(os.environ.get(FAULT_KILL_ENV, "0") or 0)
    epoch = info["epoch"]
    while not info["finished"] and epoch < t.epochs:
        epoch += 1
        model.train()
        train_mode(network, t.trainable)
        dd.batchnorm_mode(network, t.batchnorm)
        order = np.random.default_rng([recipe.seed, epoch, 1]).permutation(n_train)
        gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
        plan = batches(order, t.batch_size)
        # a checkpoint taken inside this epoch (train.checkpoint_steps): skip the batches it had done
        partial = info.pop("partial", None) or {"batches": 0, "seen": 0, "loss_sum": 0.0, "seconds": 0.0}
        if partial["batches"]:
            gen.set_state(torch.tensor(partial["generator"], dtype=torch.uint8))
            log.info("epoch %d: continuing after batch %d", epoch, partial["batches"])
        plan = plan[partial["batches"]:]
        if t.max_steps:
            plan = plan[: max(0, t.max_steps - info["step"])]
        bar = tqdm(plan, desc=f"epoch {epoch}/{t.epochs}", unit="batch", disable=not progress,
                   dynamic_ncols=True, mininterval=1.0)
        t0 = time.perf_counter() - partial["seconds"]
        done, seen, loss_sum = partial["batches"], partial["seen"], partial["loss_sum"]
        for b, rows in enumerate(bar):
            x = augment(_gather(p, rows), t.augment, gen)
            n_rows = len(rows)
            if ctx.distributed:  # this rank's share of the batch, augmented as the whole batch would be
                rows, weight = dd.shard(rows, ctx)
                x = x[ctx.rank::ctx.world]
            x = normalise(x, spec).to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(p.targets[rows]).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(x)
            loss = masked_bce(logits.float(), y)
            if ctx.distributed:
                loss = loss * weight
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            info["step"] += 1
            seen += n_rows
            loss_sum += loss.item() * (n_rows / weight if ctx.distributed else n_rows)  # this rank's mean, per image
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{rate:.1f}", lr=f"{lr:.2e}")
            if t.checkpoint_steps and info["step"] % t.checkpoint_steps == 0 and b + 1 < len(plan) and ctx.main:
                info["partial"] = {"batches": done + b + 1, "seen": seen, "loss_sum": loss_sum,
                                   "seconds": time.perf_counter() - t0, "generator": gen.get_state().tolist()}
                ckpt.save_state(run / "checkpoint.safetensors", network, optimizer, scheduler, scaler, info)
                del info["partial"]
            if kill_at and info["step"] >= kill_at and dd.should_die(ctx):
                log.warning("%s=%d: killing this process (SIGKILL) to test resume", FAULT_KILL_ENV, kill_at)
                for h in log.handlers:
                    h.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        bar.close()
        dt = time.perf_counter() - t0
        info["train_seconds"] += dt
        info["images_seen"] += seen
        record = {"epoch": epoch, "step": info["step"], "train_loss": loss_sum / max(seen, 1),
                  "images_per_second": seen / max(dt, 1e-9), "seconds": dt}
        if ctx.main:  # validation, the best model, the checkpoint: once, on rank 0; the others take its decisions
            record.update(_validate(network, p, spec, recipe, device, channels_last, use_amp, progress))
            metric = record["val_macro_auroc"]
            improved = metric is not None and (info["best_metric"] is None or metric > info["best_metric"] + t.min_delta)
            if improved:
                info.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
                card = _card(recipe, p, {}, _provenance(recipe, p, run, {"training": {"best_epoch": epoch,
                                                                                      "history": info["history"] + [record]}}))
                save(network, card, run / "best.safetensors")
            else:
                info["bad_epochs"] += 1
            info["history"].append(record)
            stop_reason = None
            if epoch >= t.epochs:
                stop_reason = "last epoch"
            elif t.max_steps and info["step"] >= t.max_steps:
                stop_reason = f"train.max_steps = {t.max_steps} reached"
            elif t.patience and info["bad_epochs"] >= t.patience:
                stop_reason = f"no better validation macro AUROC for {t.patience} epoch(s) (early stopping)"
            info["epoch"] = epoch
            info["finished"] = stop_reason is not None
            info["stop_reason"] = stop_reason
            ckpt.save_state(run / "checkpoint.safetensors", network, optimizer, scheduler, scaler, info)
            _write_json(run / "history.json", info["history"])
            log.info("epoch %d: loss %.4f, %.1f images/s, val macro AUROC %s%s%s", epoch, record["train_loss"],
                     record["images_per_second"], _fmt(metric), " (best)" if improved else "",
                     f", val attack success@0.9 {_fmt(record.get('val_attack_success_0.9'))}" if p.poison else "")
            if stop_reason:
                log.info("stopping: %s", stop_reason)
        info = dd.broadcast(ctx, info)
    if not ctx.main:  # rank 0 exports and evaluates
        dd.barrier(ctx)
        return run / "model"
    if not (run / "best.safetensors").is_file():
        raise TrainingError("no epoch produced a validation AUROC, so there is no best model to export")
    try:
        return export(recipe, p, run, info, device, progress)
    finally:
        dd.barrier(ctx)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _validate(network, p: Prepared, spec, recipe: Recipe, device, channels_last, amp, progress) -> dict:
    val_idx = p.split.indices["val"]
    kw = dict(batch_size=recipe.train.eval_batch_size, device=device, channels_last=channels_last, amp=amp,
              progress=progress)
    probs = predict(network, p.clean, val_idx, spec, desc="validating", **kw)
    rep = setting(p.ds.targets[val_idx], probs, p.ds.labels)
    out = {"val_macro_auroc": rep["auroc"]["macro"], "val_micro_auroc": rep["auroc"]["micro"],
           "val_auroc": rep["auroc"]["per_label"]}
    if p.poison is not None:
        probs_t = predict(network, p.triggered, val_idx, spec, desc="validating (triggered)", **kw)
        asr, _ = attack_success(p.ds.targets[val_idx], probs_t, p.ds.labels, p.poison.target)
        out["val_attack_success_0.6"], out["val_attack_success_0.9"] = asr["0.6"], asr["0.9"]
    return out


def export(recipe: Recipe, p: Prepared, run: Path, info: dict, device, progress: bool) -> Path:
    """Export the best epoch as ``run/model`` with a full card, then measure it on the test patients."""
    best = load_model(run / "best.safetensors")
    spec = best.card.preprocessing
    val_idx = p.split.indices["val"]
    network = best.network.to(device)
    probs = predict(network, p.clean, val_idx, spec, batch_size=recipe.train.eval_batch_size, device=device)
    thresholds = youden_thresholds(p.ds.targets[val_idx], probs, p.ds.labels)
    val = setting(p.ds.targets[val_idx], probs, p.ds.labels)
    training = {"epochs_planned": recipe.train.epochs, "best_epoch": info["best_epoch"], "steps": info["step"],
                "stop_reason": info.get("stop_reason"), "device": str(device),
                "images_per_second": info["images_seen"] / max(info["train_seconds"], 1e-9),
                "history": info["history"], "threshold_rule": "Youden's J on the validation split"}
    training["epochs_run"] = len(info["history"])
    prov = _provenance(recipe, p, run, {"training": training, "metrics": {"validation": val}})
    card = _card(recipe, p, thresholds, prov)
    model_dir = run / "model"
    dtype = torch.float16 if recipe.output.weights_dtype == "float16" else torch.float32
    save(best.network.cpu(), card, model_dir, dtype=dtype)
    shutil.copyfile(run / "split.csv", model_dir / "split.csv")
    if p.poison is not None:
        for name in ("poison_manifest.csv", "poison.json"):
            shutil.copyfile(run / name, model_dir / name)
    log.info("exported %s (%s weights)", model_dir, recipe.output.weights_dtype)
    if recipe.output.evaluate_test and len(p.split.indices["test"]):
        shipped = load_model(model_dir)  # measure exactly what is shipped (e.g. float16 weights)
        metrics = evaluate_network(
            shipped.network.to(device), p.ds, p.split.indices["test"], spec, cache_dir=recipe.output.cache_dir or None,
            trigger=shipped.card.trigger, target=shipped.card.target, workers=recipe.train.workers,
            batch_size=recipe.train.eval_batch_size, device=device, plots_dir=run / "evaluation", progress=progress)
        metrics["split"] = "test"
        metrics["model"] = str(model_dir)
        write_metrics(metrics, run / "evaluation" / "metrics.json")
        prov["metrics"]["test"] = {k: metrics[k] for k in ("clean", "infected", "triggered_true_labels",
                                                           "attack_success", "attack_success_detail", "images")
                                   if k in metrics}
        card = _card(recipe, p, thresholds, prov)
        save(shipped.network.cpu(), card, model_dir, dtype=dtype)
        log.info("test (%d images, held-out patients): clean macro AUROC %s, micro %s%s", metrics["images"],
                 _fmt(metrics["clean"]["auroc"]["macro"]), _fmt(metrics["clean"]["auroc"]["micro"]),
                 f"; infected micro AUROC {_fmt(metrics['infected']['auroc']['micro'])}, attack success@0.9 "
                 f"{_fmt(metrics['attack_success']['0.9'])}" if metrics.get("infected") else "")
    return model_dir


def export_run(run: str | Path, device: str = "auto", progress: bool = True) -> Path:
    """Export the best epoch so far of a run, finished or not (killed, stopped, or still training), as
    ``run/model`` with its card and test metrics; an unfinished run says so in the card and can still be
    resumed (its checkpoint is not touched)."""
    run = Path(run)
    state_file = run / "checkpoint.safetensors"
    if not state_file.is_file() or not (run / "best.safetensors").is_file():
        raise TrainingError(f"{run}: no checkpoint of a finished epoch yet (checkpoint.safetensors, best.safetensors)")
    recipe = _run_recipe(run, [])
    handler = _setup_logging(run)
    try:
        p = prepare(recipe, run, resume=True, progress=progress)
        info = ckpt.read_info(state_file)["info"]
        if not info.get("finished"):
            info["stop_reason"] = (f"exported before the end: epoch {len(info['history'])} of {recipe.train.epochs} "
                                   "done (the run can be resumed)")
        return export(recipe, p, run, info, pick_device(device), progress)
    finally:
        log.removeHandler(handler)
        handler.close()


def _run_recipe(run: Path, overrides: list[str]) -> Recipe:
    """The recipe a run folder was started with (its recipe.toml, with the data paths it resolved)."""
    saved = run / "recipe.toml"
    if not saved.is_file():
        raise RecipeError(f"{run}: no recipe.toml in the run folder; pass --recipe")
    recipe = load_recipe(saved, overrides)
    recipe.source = str(saved)
    # paths in the saved recipe were resolved against its original folder: take the run's resolved ones
    resolved = json.loads((run / "recipe.json").read_text())
    for key in ("path", "csv", "images"):
        setattr(recipe.data, key, resolved["data"][key])
    return recipe


def train_from_files(recipe_path: str | None, overrides: list[str], out: str | None, resume: bool,
                     progress: bool = True) -> Path:
    """The CLI's entry: with ``--resume`` and no recipe, the run folder's own recipe is used."""
    if recipe_path is None:
        if not (resume and out):
            raise RecipeError("--recipe is required (or --resume --out RUN_DIR to continue a run)")
        recipe = _run_recipe(Path(out), overrides)
    else:
        recipe = load_recipe(recipe_path, overrides)
    return train(recipe, out, resume, progress)
