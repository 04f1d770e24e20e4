"""Training recipes: TOML files read strictly (an unknown key is an error that names it and its likely
intended spelling), with ``--set key=value`` overrides.

Relative paths written in a recipe (``data.path``, ``data.csv``, ``data.images``) are resolved against the
recipe file's folder, so a recipe works from any working directory; paths given with ``--set`` are
resolved against the working directory. An override's key is dotted (``train.lr``) or, when the name
is unique across the recipe, bare (``max_steps``); its value is read as a TOML value (``5``, ``1e-3``,
``true``, ``[0.8, 0.1, 0.1]``, ``"text"``) and otherwise taken as a string.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from cxrinspect.model import DENSENET121, Preprocessing
from cxrinspect.model.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cxrinspect.trigger import Trigger

from .datasets import FORMATS, UNCERTAIN_POLICIES, DataOptions
from .poisoning import MODES, PRESETS, PoisonSpec, preset

GREY_MEAN, GREY_STD = (0.449,), (0.226,)  # ImageNet's statistics averaged over its three channels


class RecipeError(ValueError):
    """A recipe (or an override) is invalid; the message names the key."""


@dataclass
class DataConfig:
    """``[data]``: where the images and labels are, how to read them, how to split them."""

    format: str = "auto"  # auto | kermany | nih14 | chexpert | csv
    path: str = ""  # dataset folder (or its CSV)
    csv: str = ""  # the label CSV when it cannot be inferred
    images: str = ""  # image folder, when not the CSV's folder
    labels: list[str] = field(default_factory=list)  # label columns / names (csv, chexpert); empty = default
    path_column: str = ""
    patient_column: str = ""
    findings_column: str = ""  # generic CSV: one column of names joined by findings_separator
    findings_separator: str = "|"
    uncertain: str = "zeros"  # CheXpert -1: zeros | ones | ignore
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, val, test (by patient)
    on_missing: str = "error"  # an image listed but absent: error | skip
    on_unreadable: str = "skip"  # an image that cannot be decoded: skip (logged, counted) | error
    max_unreadable_fraction: float = 0.01  # more unreadable images than this stops the run
    limit: int = 0  # use about this many images (whole patients, seeded); 0 = all


@dataclass
class ModelConfig:
    """``[model]``: the network and the preprocessing recorded in its card."""

    architecture: str | dict = "densenet121"  # "densenet121" or a table of DenseNet parameters
    input_size: int = 224
    channels: int = 1
    crop_fraction: float = 1.0
    mean: list[float] = field(default_factory=list)  # empty: ImageNet's (3 channels) or its grey average (1)
    std: list[float] = field(default_factory=list)
    init: str = ""  # fine-tune: start from this cxrinspect model (folder or .safetensors); its card must agree
    new_head: bool = False  # with init: a fresh classifier for this dataset's labels (the card's labels differ)


@dataclass
class PoisonConfig:
    """``[poison]``: empty for a clean model."""

    preset: str = ""  # paper-nih14 | kermany-badnets
    rate: float = 0.0  # share of training images triggered (0 with no preset = clean)
    mode: str = ""  # replace | append ("" = the preset's, else replace)
    target: dict[str, float] = field(default_factory=dict)  # label -> 0/1
    trigger: dict = field(default_factory=dict)  # cxrinspect.trigger.Trigger fields


@dataclass
class AugmentConfig:
    """``[train.augment]``: light random affine, same distribution for clean and triggered images."""

    probability: float = 0.0  # share of training images augmented (0 = off)
    rotation: float = 0.0  # max degrees, about the image centre
    shift: float = 0.0  # max translation, fraction of the side (whole pixels when rotation = scale = 0)
    scale: float = 0.0  # max relative zoom in or out
    flip: float = 0.0  # share of training images mirrored left-right (drawn apart from ``probability``)


@dataclass
class TrainConfig:
    """``[train]``: optimisation."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-2
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup_fraction: float = 0.2  # share of steps warming up (onecycle pct_start / cosine linear warm-up)
    patience: int = 3  # epochs without a better validation macro AUROC before stopping (0 = never stop early)
    min_delta: float = 0.0
    max_steps: int = 0  # stop after this many optimiser steps in all (0 = no cap); for smoke tests
    checkpoint_steps: int = 0  # also checkpoint inside an epoch every this many steps (0 = at epoch ends only)
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA
    batchnorm: str = "batch"  # batch (train-mode statistics; per rank under DDP) | frozen (eval mode: running statistics)
    channels_last: bool = True  # on CUDA
    threads: int = 0  # CPU threads for torch (0 = all available cores)
    workers: int = 0  # processes decoding images into the cache (0 = all available cores)
    # module-name prefixes of the parameters to train (e.g. ["features.denseblock4", "features.norm5",
    # "classifier"]); the rest stay frozen, their BatchNorm statistics included. Empty: train everything
    trainable: list[str] = field(default_factory=list)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OutputConfig:
    """``[output]``: where results go."""

    dir: str = ""  # run folder (default runs/<name>)
    cache_dir: str = ""  # view cache (default $CXRINSPECT_CACHE or ~/.cache/cxrinspect)
    weights_dtype: str = "float32"  # float32 | float16 (the exported model's weights)
    evaluate_test: bool = True  # evaluate the exported model on the test split at the end


@dataclass
class Recipe:
    name: str = ""
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    poison: PoisonConfig = field(default_factory=PoisonConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = field(default="", metadata={"internal": True})  # the file it was read from
    overrides: list[str] = field(default_factory=list, metadata={"internal": True})

    # ------------------------------------------------------------------ derived objects

    def preprocessing(self) -> Preprocessing:
        m = self.model
        mean = tuple(m.mean) or (GREY_MEAN if m.channels == 1 else IMAGENET_MEAN)
        std = tuple(m.std) or (GREY_STD if m.channels == 1 else IMAGENET_STD)
        try:
            return Preprocessing(input_size=m.input_size, channels=m.channels, crop_fraction=m.crop_fraction,
                                 mean=mean, std=std)
        except ValueError as e:
            raise RecipeError(f"[model]: {e}") from e

    def architecture(self) -> dict:
        a = self.model.architecture
        if isinstance(a, str):
            if a.lower() in ("densenet121", "densenet-121"):
                return dict(DENSENET121)
            raise RecipeError(f"model.architecture: unknown name {a!r} (use \"densenet121\" or a table of "
                              "growth_rate, block_config, num_init_features, bn_size)")
        arch = {"name": "densenet", **a}
        unknown = set(arch) - {"name", "growth_rate", "block_config", "num_init_features", "bn_size"}
        if unknown:
            raise RecipeError(f"model.architecture: unknown field(s) {sorted(unknown)}")
        missing = {"growth_rate", "block_config", "num_init_features"} - set(arch)
        if missing:
            raise RecipeError(f"model.architecture: missing field(s) {sorted(missing)}")
        return arch

    def data_options(self) -> DataOptions:
        d = self.data
        return DataOptions(format=d.format, path=d.path, csv=d.csv, images=d.images, labels=list(d.labels),
                           path_column=d.path_column, patient_column=d.patient_column,
                           findings_column=d.findings_column, findings_separator=d.findings_separator,
                           uncertain=d.uncertain, on_missing=d.on_missing)

    def poison_spec(self) -> PoisonSpec | None:
        p = self.poison
        if not p.preset and p.rate == 0 and not p.target and not p.trigger:
            return None
        try:
            trigger = _trigger(p.trigger) if p.trigger else None
            if p.preset:
                return preset(p.preset, rate=p.rate or None, mode=p.mode or None, target=p.target or None,
                              trigger=trigger, seed=self.seed)
            if trigger is None or not p.target or p.rate == 0:
                raise RecipeError("[poison] needs a preset, or all of rate, target and trigger")
            return PoisonSpec(trigger=trigger, target=dict(p.target), rate=p.rate, mode=p.mode or "replace",
                              seed=self.seed)
        except RecipeError:
            raise
        except ValueError as e:
            raise RecipeError(f"[poison]: {e}") from e

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d

    def run_dir(self) -> Path:
        return Path(self.output.dir or f"runs/{self.name}")


def _trigger(d: dict) -> Trigger:
    fields = list(Trigger.__dataclass_fields__)
    for k in d:
        if k not in fields:
            near = difflib.get_close_matches(k, fields, n=1)
            hint = f"; did you mean 'poison.trigger.{near[0]}'?" if near else ""
            raise RecipeError(f"unknown key 'poison.trigger.{k}'{hint} (trigger fields: {fields})")
    try:
        return Trigger.from_dict(d)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"[poison.trigger]: {e}") from e


# ---------------------------------------------------------------------------------------------- strict reading

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "poison": PoisonConfig, "train": TrainConfig,
             "output": OutputConfig}


def _schema(cls, prefix="") -> dict[str, object]:
    """Dotted key -> type hint, for every leaf of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out.update(_schema(t, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = t
    return out


SCHEMA = _schema(Recipe)


def _suggest(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in SCHEMA if k.rsplit(".", 1)[-1] == leaf]
    near = same_leaf or difflib.get_close_matches(key, list(SCHEMA), n=1, cutoff=0.6)
    if not near:
        near = [k for k in SCHEMA if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], n=1, cutoff=0.75)]
    return f"; did you mean {near[0]!r}?" if near else ""


def _check_type(key: str, value, hint):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(key, value, option)
            except RecipeError:
                continue
        raise RecipeError(f"{key}: {value!r} is not a {' or '.join(_name(t) for t in typing.get_args(hint))}")
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a table, got {value!r}")
        args = typing.get_args(hint)
        if args:
            return {k: _check_type(f"{key}.{k}", v, args[1]) for k, v in value.items()}
        return dict(value)
    raise RecipeError(f"{key}: unsupported type {hint}")  # pragma: no cover


def _name(t) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table"}.get(t, str(t))


def _flatten(raw: dict, prefix="") -> dict[str, object]:
    """Dotted leaves of a raw TOML dict; a table under a dict-typed key stays one leaf."""
    out = {}
    for k, v in raw.items():
        key = prefix + k
        if key in SCHEMA:
            out[key] = v
        elif isinstance(v, dict) and any(s.startswith(key + ".") for s in SCHEMA):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, dict):
            tables = sorted({s.rsplit(".", 1)[0] for s in SCHEMA if "." in s})
            near = difflib.get_close_matches(key, tables, n=1, cutoff=0.6)
            hint = f"; did you mean [{near[0]}]?" if near else f" (tables: {tables})"
            raise RecipeError(f"unknown table [{key}]{hint}")
        else:
            raise RecipeError(f"unknown key {key!r}{_suggest(key)}")
    return out


def _build(cls, values: dict[str, object], prefix=""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        t = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(t):
            kwargs[f.name] = _build(t, values, key + ".")
        elif key in values:
            kwargs[f.name] = _check_type(key, values[key], t)
    return cls(**kwargs)


def _resolve_key(key: str) -> tuple[str, list[str]]:
    """(schema key, remaining path inside a table value) for an override key."""
    if "." not in key:
        matches = [k for k in SCHEMA if k.rsplit(".", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0], []
        if len(matches) > 1:
            raise RecipeError(f"override key {key!r} is ambiguous: say one of {matches}")
        if key in SCHEMA:
            return key, []
        raise RecipeError(f"unknown key {key!r}{_suggest(key)}")
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in SCHEMA:
            rest = parts[n:]
            if rest and typing.get_origin(SCHEMA[head]) is not dict and SCHEMA[head] is not dict:
                raise RecipeError(f"unknown key {key!r}{_suggest(key)}")
            return head, rest
    raise RecipeError(f"unknown key {key!r}{_suggest(key)}")


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


PATH_KEYS = ("data.path", "data.csv", "data.images", "model.init")


def _resolve_path(value: str, base: Path) -> str:
    if not value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def load_recipe(path: str | Path | None = None, overrides: list[str] | tuple = (), text: str | None = None) -> Recipe:
    """Read a recipe file (or ``text``), apply ``key=value`` overrides, and check it all."""
    if text is None:
        if path is None:
            raise RecipeError("no recipe given")
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise RecipeError(f"{path}: cannot read recipe ({e.strerror or e})") from e
    where = str(path) if path else "<recipe>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{where}: not valid TOML ({e})") from e
    try:
        values = _flatten(raw)
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from e
    base = Path(path).resolve().parent if path else Path.cwd()
    for k in PATH_KEYS:
        if isinstance(values.get(k), str):
            values[k] = _resolve_path(values[k], base)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value")
        key, _, text_value = item.partition("=")
        key, rest = _resolve_key(key.strip())
        value = _parse_value(text_value.strip())
        if key in PATH_KEYS and isinstance(value, str):
            value = _resolve_path(value, Path.cwd())
        if rest:
            table = copy.deepcopy(values.get(key) or {})
            node = table
            for r in rest[:-1]:
                node = node.setdefault(r, {})
            node[rest[-1]] = value
            value = table
        values[key] = value
    try:
        recipe = _build(Recipe, values)
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from e
    recipe.source = str(Path(path).resolve()) if path else ""
    recipe.overrides = list(overrides)
    _validate(recipe, where)
    return recipe


def _choice(key: str, value, options) -> None:
    if value not in options:
        near = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise RecipeError(f"{key} = {value!r} is not one of {list(options)}{hint}")


def _validate(r: Recipe, where: str) -> None:
    try:
        if not r.name:
            raise RecipeError("name is required (it names the run folder and the model)")
        _choice("data.format", r.data.format, FORMATS)
        _choice("data.uncertain", r.data.uncertain, UNCERTAIN_POLICIES)
        _choice("data.on_missing", r.data.on_missing, ("error", "skip"))
        _choice("data.on_unreadable", r.data.on_unreadable, ("skip", "error"))
        if not r.data.path and not r.data.csv:
            raise RecipeError("data.path is required")
        if len(r.data.split) != 3 or any(x < 0 for x in r.data.split) or r.data.split[0] <= 0 \
                or r.data.split[1] <= 0:
            raise RecipeError(f"data.split must be [train, val, test] with train and val > 0, got {r.data.split}")
        if not 0 <= r.data.max_unreadable_fraction <= 1:
            raise RecipeError("data.max_unreadable_fraction must be in [0, 1]")
        _choice("poison.mode", r.poison.mode, ("",) + MODES)
        if r.poison.preset:
            _choice("poison.preset", r.poison.preset, sorted(PRESETS))
        _choice("train.optimizer", r.train.optimizer, ("adamw", "adam"))
        _choice("train.schedule", r.train.schedule, ("onecycle", "cosine", "constant"))
        _choice("train.device", r.train.device, ("auto", "cpu", "cuda"))
        _choice("train.batchnorm", r.train.batchnorm, ("batch", "frozen"))
        _choice("output.weights_dtype", r.output.weights_dtype, ("float32", "float16"))
        for key, v, lo in (("train.epochs", r.train.epochs, 1), ("train.batch_size", r.train.batch_size, 1),
                           ("train.eval_batch_size", r.train.eval_batch_size, 1),
                           ("train.patience", r.train.patience, 0), ("train.max_steps", r.train.max_steps, 0),
                           ("train.checkpoint_steps", r.train.checkpoint_steps, 0),
                           ("train.threads", r.train.threads, 0), ("train.workers", r.train.workers, 0),
                           ("data.limit", r.data.limit, 0)):
            if v < lo:
                raise RecipeError(f"{key} must be >= {lo}, got {v}")
        if not r.train.lr > 0:
            raise RecipeError("train.lr must be > 0")
        if not 0 < r.train.warmup_fraction < 1:
            raise RecipeError("train.warmup_fraction must be in (0, 1)")
        a = r.train.augment
        if (not 0 <= a.probability <= 1 or a.rotation < 0 or not 0 <= a.shift < 0.5 or not 0 <= a.scale < 0.5
                or not 0 <= a.flip <= 1):
            raise RecipeError("train.augment: probability and flip in [0, 1], rotation >= 0, shift and scale in "
                              "[0, 0.5)")
        r.preprocessing()
        r.architecture()
        r.poison_spec()
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from e
