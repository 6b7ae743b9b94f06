"""Multi-process training on torch.distributed, as launched by ``torchrun --nproc_per_node=N -m vaekit train``.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op for one process.
Backend: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import gc
import os
from typing import Any

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def start(device: torch.device) -> bool:
    """Join the process group if launched by torchrun; returns True when this call created it."""
    _, size, _ = world()
    if size <= 1 or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device: one GPU per rank
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def is_main() -> bool:
    return world()[0] == 0


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. an error message, so all ranks stop together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``t`` over all ranks (in place for the process group; a copy is returned)."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
    return t


def stop(created: bool) -> None:
    """Leave the process group; the barrier keeps a rank from tearing it down while rank 0 still writes
    (without it, gloo aborted rank 1 with "terminate called without an active exception", 1 run in 4)."""
    if created and dist.is_initialized():
        # DistributedDataParallel's reducer and its pending gloo work sit in reference cycles; freed later, at
        # interpreter exit, they outlive the process group and gloo's threads abort the process (SIGABRT,
        # "terminate called without an active exception", ~1 run in 8 under load). Free them first.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
