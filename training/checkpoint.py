"""The training checkpoint: everything needed to continue a run, in ONE safetensors file, replaced atomically.

Tensors (model weights and buffers, the optimiser's per-parameter tensors, torch RNG states) are
safetensors tensors; everything else (epoch, step, best metric, history, optimiser hyper-parameters and
scalar state, the scheduler and grad-scaler state, numpy and Python RNG states) is JSON in the file's
metadata. Nothing is pickled, so loading a checkpoint cannot run code. The file is written to a
temporary name, fsynced and renamed over the old one: a run killed at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cxrinspect import atomic

FORMAT = "cxrinspect-training-state/1"
META_KEY = "cxrinspect.training"


class ResumeError(RuntimeError):
    """A checkpoint cannot be used to resume this run."""


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def save_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               scaler: torch.amp.GradScaler | None, info: dict) -> None:
    """Write the training state to ``path`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    osd = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for pid, st in osd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optimizer.{pid}.{name}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = val
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "format": FORMAT,
        "info": _jsonable(info),
        "optimizer": {"param_groups": _jsonable(osd["param_groups"]), "scalars": _jsonable(scalars)},
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        "scaler": _jsonable(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None,
        "rng": {"numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": _jsonable(random.getstate())},
    }
    atomic.replace(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)}))


def read_info(path: str | Path) -> dict:
    """The JSON part of a checkpoint (no tensors loaded)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        meta = json.loads(header["__metadata__"][META_KEY])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ResumeError(f"{path}: not a cxrinspect training checkpoint ({e})") from e
    if meta.get("format") != FORMAT:
        raise ResumeError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               scaler: torch.amp.GradScaler | None, device: torch.device | str = "cpu") -> dict:
    """Restore everything :func:`save_state` wrote; returns its ``info``."""
    path = Path(path)
    meta = read_info(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ResumeError(f"{path}: cannot read checkpoint tensors ({e})") from e
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ResumeError(f"{path}: checkpoint does not fit this model ({e})") from e
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(sc)
    groups = meta["optimizer"]["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    for st in optimizer.state.values():  # load_state_dict casts to the params' device/dtype, 'step' stays
        for name, v in st.items():
            if torch.is_tensor(v) and name != "step":
                st[name] = v.to(device)
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and scaler.is_enabled() and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    ns = meta["rng"]["numpy"]
    np.random.set_state((ns[0], np.array(ns[1], dtype=np.uint32), ns[2], ns[3], ns[4]))
    ps = meta["rng"]["python"]
    random.setstate((ps[0], tuple(ps[1]), ps[2]))
    return meta["info"]
