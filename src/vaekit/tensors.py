"""Where tensors live and how stored items become model input: device choice, bf16 support, stored arrays
to tensors. Shared by training, the run-folder API, the estimators, pictures and the explorer."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .config import RunConfig
from .data import ArrayData
from .data.streaming import FileArray, FileTensor
from .errors import VaekitError


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA when present (for "auto"; under torchrun the process's own GPU), else CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if local_rank >= torch.cuda.device_count():  # NCCL needs one GPU per process
            raise VaekitError(f"torchrun started process {local_rank} on this machine, but it has "
                              f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node="
                              f"{torch.cuda.device_count()} or --device cpu")
        return torch.device(f"cuda:{local_rank}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError(f"device {name!r} asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError:
        raise VaekitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 matmuls: AVX512-BF16/AMX on CPU (oneDNN), Ampere or newer on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def describe_machine(device: torch.device | None = None) -> dict:
    """What speeds and bf16 figures depend on, for a run's summary and the benchmarks' rows: the CPU's name, whether
    it has native bf16 (then ``--precision auto`` trains in bf16 autocast, ~2x the fp32 speed of an AVX2 CPU), torch's
    threads, the GPU's name (``device``'s when it is a CUDA device, else the current one's; None without CUDA) and
    how many GPUs there are."""
    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere platform's coarser name
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor() or platform.machine(),
            "cpu_native_bf16": bf16_supported(torch.device("cpu")), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else None)
            if torch.cuda.is_available() else None, "gpus": torch.cuda.device_count()}


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training, or None for plain fp32."""
    precision = cfg.train.precision
    if precision not in ("auto", "fp32", "bf16"):
        raise VaekitError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    if precision == "fp32" or (precision == "auto" and not bf16_supported(device)):
        return None
    return torch.bfloat16


def as_tensor(data: ArrayData, device: torch.device) -> torch.Tensor | FileTensor:
    """The items as a tensor on ``device``; a streamed file's as a ``FileTensor``, which reads the rows asked of
    it (slices, ``index_select``, ``split``) and holds nothing else in memory."""
    if isinstance(data.x, FileArray):
        return FileTensor(data.x, device)
    return torch.from_numpy(np.ascontiguousarray(data.x)).to(device)


def select_rows(x: torch.Tensor | FileTensor, index: torch.Tensor) -> torch.Tensor | FileTensor:
    """x's rows at ``index`` (R,), in that order, kept where x is: a streamed file's stay on disk (a row index)."""
    if isinstance(x, FileTensor):
        return FileTensor(x.items[index.cpu().numpy()], x.device)
    return x.index_select(0, index)


def shuffle_plan(x: torch.Tensor | FileTensor, batch_size: int) -> tuple[int, int]:
    """(block, window) for ``shuffled_batches`` over x: (1, 1), rows shuffled one by one, for items in memory; a
    streamed file's blocks of rows one read takes and batches read at once."""
    return x.shuffle_plan(batch_size) if isinstance(x, FileTensor) else (1, 1)


def gather(x: torch.Tensor | FileTensor, indexes: Iterable[torch.Tensor], window: int = 1
           ) -> Iterator[torch.Tensor]:
    """x's rows for each index (B,) in turn: one ``index_select`` each, or for streamed items, read ``window``
    batches at a time, one window ahead (``FileTensor.gather_ahead``)."""
    if isinstance(x, FileTensor):
        return x.gather_ahead(indexes, window)
    return (x.index_select(0, index) for index in indexes)


def model_input(batch: torch.Tensor, binarize: str = "none", generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """A stored batch to model input: uint8 -> float in [0, 1]; dynamic binarization draws pixels."""
    x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch
    if binarize == "dynamic":
        x = torch.bernoulli(x, generator=generator)
    return x
