"""Self-describing checkpoints: safetensors weights + a JSON model card. Nothing is ever unpickled.

Two layouts, both loaded by :func:`load`:
- a directory holding ``card.json`` and ``weights.safetensors``;
- a single ``.safetensors`` file whose metadata carries the card under ``cxrinspect.card``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import atomic
from .card import CARD_FILE, CARD_KEY, CheckpointError, ModelCard, read_card
from .densenet import build

WEIGHTS_FILE = "weights.safetensors"


@dataclass
class Model:
    """A loaded classifier: the network (eval mode, float32, CPU) and its card."""

    network: torch.nn.Module
    card: ModelCard
    path: str = ""

    @property
    def labels(self) -> list[str]:
        return self.card.labels


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(network: torch.nn.Module, card: ModelCard, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write weights and card atomically; ``path`` ending in .safetensors gives the single-file layout."""
    path = Path(path)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in network.state_dict().items()}
    card.weights_sha256 = weights_digest(state)
    if path.suffix == ".safetensors":
        atomic.replace(path, lambda tmp: save_file(state, tmp, metadata={CARD_KEY: card.to_json()}))
    else:
        path.mkdir(parents=True, exist_ok=True)
        atomic.replace(path / WEIGHTS_FILE, lambda tmp: save_file(state, tmp))
        atomic.write_text(path / CARD_FILE, card.to_json() + "\n")
    return path


def load(path: str | Path, verify_digest: bool = True) -> Model:
    """Load a checkpoint, validating the card, the weights' names and shapes, and their digest."""
    path = Path(path)
    card = read_card(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: cannot read weights ({e})") from e
    if verify_digest and card.weights_sha256 and weights_digest(state) != card.weights_sha256:
        raise CheckpointError(f"{weights}: weights do not match the card's digest (modified or corrupt file)")
    try:
        network = build(card.architecture, len(card.labels), card.preprocessing.channels)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: card architecture is invalid ({e})") from e
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: weights do not fit the card's architecture "
                              f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                              f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{weights}: tensor shapes do not fit the card: {wrong[:3]}")
    network.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    network.eval()
    return Model(network=network, card=card, path=str(path))
