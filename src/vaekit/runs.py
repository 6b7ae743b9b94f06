"""The run folder and model files: atomic writes, safetensors + JSON, never pickle.

A run folder holds ``config.json``, ``model.safetensors`` (weights + the config to rebuild them),
``checkpoint.safetensors`` (weights, optimiser state, RNG state, epoch), ``metrics.jsonl`` and pictures.
"""
from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import RunConfig
from .data import Standardizer
from .errors import RunError, VaekitError
from .models import build_model

MODEL_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE = (
    "model.safetensors", "checkpoint.safetensors", "config.json", "metrics.jsonl")
SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"
# The pictures a run folder may hold (reporting.py draws and captions them): the layout lives with the folder.
PICTURE_FILES = ("samples.png", "samples_drawn.png", "samples_by_class.png", "reconstructions.png", "latent.png",
                 "manifold.png", "interpolation.png", "denoising.png", "confusion.png", "curves.png", "recon_error.png")
FORMAT = "vaekit-model/1"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename over ``path``.

    A crash leaves either the old file or the new one, never a half-written one.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as any new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # e.g. a full disk: one line naming the file, the old file left as it was
            raise RunError(f"{path}: cannot write it ({e.strerror or e})") from e
        raise
    _fsync_dir(path.parent)


class BackgroundWriter:
    """``atomic_write`` on one background thread, in the order asked, so the next epoch trains while the last
    one's checkpoint and model file are written and fsynced (on MNIST ~20 ms of a ~0.4 s epoch).

    ``write`` only queues; ``wait`` blocks until everything queued is on disk and raises the first failed
    write (e.g. a full disk) in the caller's thread.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaekit-writer")
        self._pending: list[Future] = []

    def write(self, path: str | os.PathLike, data: bytes) -> None:
        self._pending.append(self._pool.submit(atomic_write, path, data))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # the write's own exception, if it failed

    def close(self) -> None:
        """Finish the queued writes (a run stopped by an error or Ctrl-C still gets its last files)."""
        self._pool.shutdown(wait=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create a fresh run folder; an existing non-empty one is an error unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and _stopped_before_first_epoch(path) and not overwrite:
        import sys

        print(f"vaekit: note: {path} holds a run stopped before its first epoch ended (no checkpoint); starting it "
              "over", file=sys.stderr)
        overwrite = True
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RunError(f"{path}: run folder already exists; use --resume to continue it, "
                           "--overwrite to replace it, or another --run-dir")
        for name in (MODEL_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, REPORT_FILE,
                     *PICTURE_FILES):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stopped_before_first_epoch(path: Path) -> bool:
    """A folder holding only what an interrupted first epoch leaves: config.json, metrics without a line, temp files."""
    names = {p.name for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
    return CONFIG_FILE in names and names <= {CONFIG_FILE, METRICS_FILE} and not read_metrics(path)


def remove_unstarted(run_dir: Path) -> None:
    """Remove what a fresh run wrote before it stopped in its first epoch (config.json, an empty metrics file, temp
    files) and the folder itself if that leaves it empty: a run that could not read its data leaves nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not _stopped_before_first_epoch(run_dir):
        return
    remove_stale_temp_files(run_dir)
    for name in (CONFIG_FILE, METRICS_FILE):
        (run_dir / name).unlink(missing_ok=True)
    if not any(run_dir.iterdir()):
        run_dir.rmdir()


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete temp files that a killed process left behind (``atomic_write`` names them ``.NAME.*.tmp``)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync, so a crash loses at most the line being written."""
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a crash ends the readable history
    return records


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Keep only records up to ``last_epoch`` (used on resume)."""
    kept = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= last_epoch]
    atomic_write(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept).encode())


# --- model files ---------------------------------------------------------------------------------

def _model_tensors(model: torch.nn.Module, standardizer: Standardizer | None) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if standardizer is not None:
        tensors["data.mean"] = torch.from_numpy(standardizer.mean)
        tensors["data.std"] = torch.from_numpy(standardizer.std)
    return tensors


def save_model(path: Path, model: torch.nn.Module, cfg: RunConfig,
               standardizer: Standardizer | None = None, extra: dict[str, str] | None = None,
               extra_tensors: dict[str, torch.Tensor] | None = None,
               write: Callable[[Path, bytes], None] = atomic_write) -> None:
    """Write weights and the config that rebuilds them as one safetensors file, atomically.

    The bytes are made here, from the weights as they are now; ``write`` (e.g. ``BackgroundWriter.write``)
    may put them on disk later."""
    tensors = _model_tensors(model, standardizer)
    tensors.update(extra_tensors or {})
    metadata = {"format": FORMAT, "config": cfg.to_json(), **(extra or {})}
    write(path, st_save(tensors, metadata=metadata))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata; refuse anything else (pickles above all) with a reason."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such model file")
    data = path.read_bytes()
    if not _looks_like_safetensors(data):
        if data[:1] == b"\x80" or data[:2] == b"PK":  # pickle protocol 2+ / torch.save zip archive
            raise RunError(f"{path}: is a pickle / torch.save file, not safetensors; vaekit never unpickles "
                           "model files because unpickling can run arbitrary code")
        raise RunError(f"{path}: not a safetensors file (bad header)")
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as e:
        raise RunError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None
    return tensors, metadata


SCORES_PREFIX = "train_scores."  # a model file's training scores, one tensor per anomaly score


def score_tensors(scores: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {SCORES_PREFIX + name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in scores.items()}


def read_train_scores(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The training scores a model file's tensors hold: {score: (n,) float64}; {} for a file without them."""
    return {k[len(SCORES_PREFIX):]: v.double().numpy() for k, v in tensors.items() if k.startswith(SCORES_PREFIX)}


def _looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object of that length within the file."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, RunConfig, Standardizer | None]:
    """Rebuild a model from a run folder or a ``.safetensors`` file. Returns (model, config, standardizer)."""
    return load_fitted(path, device)[:3]


def load_fitted(path: str | os.PathLike, device: str | torch.device = "cpu"
                ) -> tuple[torch.nn.Module, RunConfig, Standardizer | None, dict[str, np.ndarray]]:
    """``load_model`` and the training scores the file holds ({} if none), from one read of the file."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
        if not path.is_file():
            raise RunError(f"{path.parent}: not a run folder with a model (no {MODEL_FILE})")
    elif not path.exists():
        raise RunError(f"{path}: no such run folder or model file")
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise RunError(f"{path}: not a vaekit model file (no vaekit config in its metadata)")
    try:
        cfg = RunConfig.from_dict(json.loads(metadata["config"]))
        model = build_model(cfg.model)
    except (VaekitError, json.JSONDecodeError, TypeError) as e:
        raise RunError(f"{path}: its config cannot rebuild a model ({e})") from None
    try:
        _load_state(model, {**model.legacy_state(tensors), **_model_weights(tensors)})
    except RuntimeError as e:
        first = str(e).replace("\n", " ").replace("\t", "")[:200]
        raise RunError(f"{path}: weights do not match its config ({first})") from None
    standardizer = None
    if "data.mean" in tensors:
        standardizer = Standardizer(tensors["data.mean"].numpy(), tensors["data.std"].numpy())
    return model.to(device).eval(), cfg, standardizer, read_train_scores(tensors)


def _load_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(weights)``, strict except for the model's ``optional_state`` buffers."""
    device = next(model.parameters()).device
    missing, unexpected = model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=False)
    missing = [k for k in missing if k not in model.optional_state]
    if missing or unexpected:
        raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")


def _model_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict out of a model or checkpoint file's tensors (stored under "model.")."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load a model file's weights into ``model`` in place (same architecture), on the model's device."""
    tensors, _ = read_safetensors(path)
    _load_state(model, _model_weights(tensors))


# --- checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig,
                    epoch: int, standardizer: Standardizer | None, best: float | None,
                    write: Callable[[Path, bytes], None] = atomic_write,
                    within: tuple[int, torch.Tensor] | None = None, lr_scale: float = 1.0) -> None:
    """One self-describing record: weights, optimiser state, RNG state, epochs done, best validation loss, the lr
    schedule's scale (``objectives.Schedule.scale``: --on-spike rollback halves it); and, for a checkpoint taken
    inside epoch ``epoch + 1``, ``within`` = (its steps done, the sums of its training terms so far (T + 1,), as
    ``training.train_epoch`` keeps them)."""
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if within is not None:
        tensors["epoch_sums"] = within[1].detach().double().cpu().contiguous()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    state = optimizer.state_dict()
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    extra = {"epoch": str(epoch), "param_groups": json.dumps(state["param_groups"]),
             "best_val_loss": json.dumps(best), "step": str(0 if within is None else within[0]),
             "lr_scale": repr(float(lr_scale))}
    save_model(path, model, cfg, standardizer, extra=extra, extra_tensors=tensors, write=write)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
                    ) -> tuple[int, float | None, tuple[int, torch.Tensor] | None, float]:
    """Restore weights, optimiser and RNG state in place; returns (epochs done, best validation loss, ``within``
    of a checkpoint taken inside the next epoch, else None, the lr schedule's scale)."""
    tensors, metadata = read_safetensors(path)
    device = next(model.parameters()).device
    _load_state(model, _model_weights(tensors))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value.to(device) if value.ndim else value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    step = int(metadata.get("step", "0"))  # checkpoints written before mid-epoch ones have no step
    within = (step, tensors["epoch_sums"]) if step else None
    lr_scale = float(metadata.get("lr_scale", "1.0"))  # checkpoints written before --on-spike have none
    return int(metadata["epoch"]), json.loads(metadata.get("best_val_loss", "null")), within, lr_scale
