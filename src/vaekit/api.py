"""The Python API. Every CLI subcommand is a thin wrapper over one function here.

Examples
--------
>>> import vaekit
>>> result = vaekit.train(dataset="digits", epochs=2, run_dir="/tmp/vaekit-doc", overwrite=True, progress=False)
>>> sorted(vaekit.evaluate("/tmp/vaekit-doc"))
['kl', 'loss', 'n', 'recon']
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import runs
from .config import RunConfig, build_config
from .data import ArrayData, load_data, load_splits
from .errors import RunError, VaekitError
from .training import TrainResult, as_tensor, evaluate_terms, model_input, pick_device
from .training import train as _train

from .reporting import SUMMARY_FILE


def train(preset: str | None = None, *, run_dir: str | Path | None = None, overwrite: bool = False,
          progress: bool = True, pictures: bool = True, **settings: Any) -> TrainResult:
    """Train a model and write its run folder (config, model, metrics, summary, pictures).

    ``settings`` are config fields by name (``dataset="mnist"``, ``epochs=10``, ``hidden=(512, 256)``,
    ...) or ``section.field``; ``None`` values are ignored.
    """
    cfg = build_config(preset, **settings)
    started = time.perf_counter()
    result = _train(cfg, run_dir, overwrite=overwrite, progress=progress)
    _finish(result, time.perf_counter() - started, pictures)
    return result


def resume(run_dir: str | Path, *, epochs: int | None = None, progress: bool = True,
           pictures: bool = True) -> TrainResult:
    """Continue a run from its last checkpoint, optionally to a larger number of epochs."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if epochs is not None:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "epochs": epochs}})
    started = time.perf_counter()
    result = _train(cfg, run_dir, resume=True, progress=progress)
    _finish(result, time.perf_counter() - started, pictures)
    return result


def _finish(result: TrainResult, seconds: float, pictures: bool) -> None:
    epochs = [m["seconds"] for m in result.metrics]
    summary = {"test": result.test, "epochs": len(result.metrics), "wall_seconds": seconds,
               "mean_epoch_seconds": float(np.mean(epochs)) if epochs else None,
               "device": str(next(result.model.parameters()).device), "torch": torch.__version__}
    runs.write_json(result.run_dir / SUMMARY_FILE, summary)
    report(result.run_dir, pictures=pictures)


def read_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / runs.CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run folder (no {runs.CONFIG_FILE})")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def load(run: str | Path, device: str = "auto") -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run folder (or a ``.safetensors`` file) and its config."""
    model, cfg, _ = runs.load_model(run, pick_device(device))
    return model, cfg


def input_data(run: str | Path, data: str | None = None, split: str = "test") -> ArrayData:
    """The items a command works on: ``data`` (any data spec) or the run's own ``split``.

    CSV inputs are standardised with the run's saved training mean and std.
    """
    model, cfg, standardizer = runs.load_model(run)
    if data is None:
        splits = load_splits(cfg.data)
        return {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    items = load_data(data, cfg.data)
    if standardizer is not None:
        items = standardizer.apply(items)
    if items.item_shape != tuple(cfg.model.input_shape):
        raise VaekitError(f"{items.name}: items have shape {items.item_shape}, the model expects "
                          f"{tuple(cfg.model.input_shape)}")
    return items


def evaluate(run: str | Path, data: str | None = None, *, seed: int = 0, batch_size: int = 1000
             ) -> dict[str, float]:
    """Mean per-sample negative ELBO (``loss``), reconstruction and KL on the run's test split (or ``data``)."""
    model, cfg = load(run)
    items = input_data(run, data)
    x = as_tensor(items, next(model.parameters()).device)
    terms = evaluate_terms(model, x, batch_size, seed=seed, binarize=cfg.data.binarize)
    return {**terms, "n": len(items)}


@torch.no_grad()
def sample(run: str | Path, n: int = 64, *, seed: int = 0) -> np.ndarray:
    """``n`` new items decoded from the prior z ~ N(0, I): (n, *item_shape), the likelihood's mean."""
    if n < 1:
        raise VaekitError(f"number of samples must be at least 1, got {n}")
    model, cfg = load(run)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [model.decode_mean(torch.randn(min(4096, n - i), cfg.model.latent_dim, generator=gen, device=device))
           for i in range(0, n, 4096)]
    return torch.cat(out).cpu().numpy()


@torch.no_grad()
def reconstruct(run: str | Path, n: int = 8, data: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions) of the first ``n`` test items, decoded from the posterior mean."""
    model, cfg = load(run)
    items = input_data(run, data)
    x = model_input(as_tensor(items, next(model.parameters()).device)[:n])
    mu, _ = model.encode(x)
    return x.cpu().numpy(), model.decode_mean(mu).cpu().numpy()


def report(run: str | Path, pictures: bool = True) -> Path:
    """Rebuild the pictures (unless ``pictures=False``) and ``report.html`` of a run folder."""
    from .reporting import make_pictures, write_report

    read_config(run)  # a clear error for a folder that is not a run
    if pictures:
        make_pictures(run)
    return write_report(run)


def plot(run: str | Path, kind: str, out: str | Path | None = None, **options: Any) -> dict:
    """One picture of a run: ``kind`` is "latent", "manifold" (``n``) or "interpolate" (``i``, ``j``, ``steps``).

    Writes ``<run>/<kind>.png`` (or ``out``) and returns the numbers it produced.
    """
    from . import reporting as rep

    functions = {"latent": rep.plot_latent, "manifold": rep.plot_manifold, "interpolate": rep.plot_interpolation}
    if kind not in functions:
        raise VaekitError(f"unknown plot {kind!r}; choose from {', '.join(functions)}")
    read_config(run)
    return functions[kind](rep.load_run(run), out=Path(out) if out else None, **options)
