"""DistributedDataParallel for the training loop: ``cxrinspect-train train --recipe R --ddp N``, or the same command
under ``torchrun`` (any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``).

The loop stays one loop (:mod:`cxrinspect.training.loop`); this module gives it the rank, the process group and
the share of each batch:

- ``gloo`` on the CPU, ``nccl`` on GPUs (one GPU per local rank);
- every rank draws the same epoch permutation from (seed, epoch), which is what ``DistributedSampler.set_epoch``
  gives a sampler, and takes a strided share of each *global* batch (:func:`shard`); the loss of a share is
  weighted so that DDP's gradient average is the gradient of the whole batch's mean loss. N processes therefore
  make the optimiser steps of one process over the same batches: with ``train.batchnorm = "frozen"`` (BatchNorm
  in eval mode) equal within float tolerance; with train-mode BatchNorm each rank normalises by its own share's
  statistics (as every DDP run does unless it synchronises them), and rank 0's running statistics are the
  ones broadcast and saved;
- rank 0 alone writes the run folder (recipe, split, checkpoints atomically, best model, history, export,
  evaluation): the other ranks wait at a barrier and take rank 0's decisions (early stopping) from a broadcast;
- a resumed run (``--resume``, or a restart by ``torchrun --max-restarts`` after a killed worker: then
  ``TORCHELASTIC_RESTART_COUNT`` > 0) loads the last checkpoint on every rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

FAULT_KILL_RANK_ENV = "CXRINSPECT_FAULT_KILL_RANK"
"""Testing aid, with ``CXRINSPECT_FAULT_KILL_AT_STEP``: only this rank kills itself, and only in the first attempt
(``TORCHELASTIC_RESTART_COUNT`` 0), so ``torchrun --max-restarts`` can show the restart resumes."""


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


SINGLE = Context()


def context() -> Context:
    """This process's place, from the launcher's environment (one process without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def restarted() -> bool:
    """True in a worker that torchrun restarted (it must resume from the last checkpoint)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def start(ctx: Context, device_type: str):
    """Join the process group (``gloo`` on the CPU, ``nccl`` on CUDA); returns the device of this rank."""
    import torch
    import torch.distributed as dist

    if not ctx.distributed:
        return None
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        device = torch.device("cuda", ctx.local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        from datetime import timedelta

        # rank 0 validates, checkpoints and exports while the others wait: allow it time
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world,
                                timeout=timedelta(hours=2))
    return device


def stop(ctx: Context) -> None:
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(rc: int) -> None:
    """End a torchrun worker with ``rc`` without the interpreter's finalization: the standard streams and logging
    flushed, then ``os._exit``. Gloo's threads torn down at interpreter exit sometimes abort a worker whose run
    has finished and been written ("terminate called without an active exception", SIGABRT; the same abort in
    pytorch/pytorch#179291's description), and torchrun then reports the whole run failed. A no-op outside torchrun."""
    import logging

    if not context().distributed:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def barrier(ctx: Context) -> None:
    import torch.distributed as dist

    if ctx.distributed:
        dist.barrier()


def broadcast(ctx: Context, obj):
    """Rank 0's ``obj`` on every rank (small JSON-like values: decisions, metrics)."""
    import torch.distributed as dist

    if not ctx.distributed:
        return obj
    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(rows: np.ndarray, ctx: Context) -> tuple[np.ndarray, float]:
    """This rank's share of a global batch (every ``world``-th row from ``rank``) and the weight of its mean loss
    (``len(share) * world / len(rows)``): DDP averages the ranks' gradients, so the weighted shares average to the
    gradient of the whole batch's mean loss even when the batch does not divide evenly."""
    if not ctx.distributed:
        return rows, 1.0
    mine = rows[ctx.rank::ctx.world]
    return mine, len(mine) * ctx.world / max(len(rows), 1)


def wrap(network, ctx: Context, device):
    """The network in DistributedDataParallel (its parameters and buffers start equal to rank 0's)."""
    if not ctx.distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(network):
    return getattr(network, "module", network)


def should_die(ctx: Context) -> bool:
    """With :data:`FAULT_KILL_RANK_ENV` set: this rank, first attempt only; without it: every process (the
    single-process fault test's behaviour)."""
    want = os.environ.get(FAULT_KILL_RANK_ENV, "")
    if want == "":
        return True
    return int(want) == ctx.rank and not restarted()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, argv: list[str], max_restarts: int = 0) -> int:
    """``--ddp N``: run this same command (without ``--ddp``) in ``n`` processes under torchrun on this machine."""
    if n < 1:
        raise ValueError("--ddp needs at least 1 process")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(n),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
           "--max-restarts", str(max_restarts), "-m", "cxrinspect.training.cli", *argv]
    return subprocess.call(cmd, env=restart_safe_env(os.environ))


def restart_safe_env(env) -> dict:
    """The environment for torchrun with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (unless the user set it).

    By default torchrun's c10d rendezvous lets the workers share the agent's TCPStore; after a restart they can
    read keys left by the killed attempt and wait for peers that no longer exist (pytorch/pytorch#135712): a
    restarted run then hangs in its first collective. With the variable set, rank 0 of each attempt hosts a fresh
    store. Users who call ``torchrun`` themselves with ``--max-restarts`` should set it too."""
    return {**env, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": env.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")}


def batchnorm_mode(network, mode: str) -> None:
    """``train.batchnorm``: ``batch`` leaves BatchNorm in train mode (batch statistics; per rank under DDP);
    ``frozen`` puts every BatchNorm in eval mode (its running statistics, not updated), so N ranks and one process
    compute the same function of the same batches and their runs can be compared exactly."""
    import torch

    if mode == "frozen":
        for m in network.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
