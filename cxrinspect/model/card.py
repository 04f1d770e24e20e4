"""The model card: everything needed to use a checkpoint correctly, stored beside its weights as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..trigger import Trigger
from .preprocess import Preprocessing

FORMAT = "cxrinspect-model/1"
CARD_FILE, CARD_KEY = "card.json", "cxrinspect.card"  # the card's file in a model directory; its safetensors key


class CardError(ValueError):
    """A model card is missing, malformed, or does not match its weights."""


class CheckpointError(Exception):
    """A checkpoint could not be loaded; the message names the file and what is wrong."""


@dataclass
class ModelCard:
    """What a checkpoint is.

    - ``labels``: label names in output order (independent sigmoids).
    - ``architecture``: the builder's entry (see :mod:`cxrinspect.model.densenet`).
    - ``preprocessing``: how inputs are prepared (:class:`Preprocessing`).
    - ``thresholds``: per-label decision thresholds on the probability.
    - ``provenance``: data, recipe, seed, metrics, software versions, creation time.
    - ``trigger`` / ``target``: for a deliberately poisoned model, the trigger it was trained with and
      the label vector it forces (label name -> 0/1).
    """

    labels: list[str]
    architecture: dict
    preprocessing: Preprocessing
    thresholds: dict[str, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    name: str = ""
    description: str = ""
    trigger: Trigger | None = None
    target: dict[str, float] | None = None
    weights_sha256: str = ""

    def __post_init__(self):
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise CardError("card needs a non-empty list of label names")
        if len(set(self.labels)) != len(self.labels):
            raise CardError(f"card has duplicate label names: {self.labels}")
        unknown = set(self.thresholds) - set(self.labels)
        if unknown:
            raise CardError(f"thresholds name unknown label(s): {sorted(unknown)}")
        for label in self.labels:
            t = float(self.thresholds.get(label, 0.5))
            if not 0.0 <= t <= 1.0:
                raise CardError(f"threshold of {label} must be in [0, 1], got {t}")
            self.thresholds[label] = t
        if self.target is not None:
            unknown = set(self.target) - set(self.labels)
            if unknown:
                raise CardError(f"target names unknown label(s): {sorted(unknown)}")
        if (self.trigger is None) != (self.target is None):
            raise CardError("a poisoned model's card needs both trigger and target")

    @property
    def poisoned(self) -> bool:
        return self.trigger is not None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "thresholds": dict(self.thresholds),
            "trigger": self.trigger.to_dict() if self.trigger else None,
            "target": self.target,
            "provenance": self.provenance,
            "weights_sha256": self.weights_sha256,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        if not isinstance(d, dict):
            raise CardError("card is not a JSON object")
        if d.get("format") != FORMAT:
            raise CardError(f"card format is {d.get('format')!r}, expected {FORMAT!r}")
        missing = {"architecture", "labels", "preprocessing"} - set(d)
        if missing:
            raise CardError(f"card lacks required field(s): {sorted(missing)}")
        try:
            return cls(
                labels=list(d["labels"]),
                architecture=dict(d["architecture"]),
                preprocessing=Preprocessing.from_dict(d["preprocessing"]),
                thresholds=dict(d.get("thresholds") or {}),
                provenance=dict(d.get("provenance") or {}),
                name=str(d.get("name", "")),
                description=str(d.get("description", "")),
                trigger=Trigger.from_dict(d["trigger"]) if d.get("trigger") else None,
                target=dict(d["target"]) if d.get("target") else None,
                weights_sha256=str(d.get("weights_sha256", "")),
            )
        except CardError:
            raise
        except (TypeError, ValueError, KeyError) as e:
            raise CardError(f"invalid card: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"card is not valid JSON: {e}") from e
        return cls.from_dict(d)


def read_card(path: str | Path) -> ModelCard:
    """The card of a checkpoint, without loading the weights."""
    path = Path(path)
    try:
        if path.is_dir():
            card_path = path / CARD_FILE
            if not card_path.is_file():
                raise CheckpointError(f"{path}: no {CARD_FILE} in the model directory")
            return ModelCard.from_json(card_path.read_text())
        if not path.is_file():
            raise CheckpointError(f"{path}: no such model file or directory")
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (too short)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > 100_000_000:
                raise CheckpointError(f"{path}: not a safetensors file (bad header length)")
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
        if CARD_KEY not in meta:
            raise CheckpointError(f"{path}: safetensors file has no model card ({CARD_KEY} metadata); "
                                  "use an importer for foreign weights")
        return ModelCard.from_json(meta[CARD_KEY])
    except CardError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from e
