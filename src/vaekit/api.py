"""The Python API on run folders. Every CLI subcommand is a thin wrapper over one function here.

``run`` is a run folder (or its ``.safetensors`` file), opened once into its fitted estimator, or that estimator
itself (``vaekit.load(run)``, or one fitted in Python): code that calls several functions on one model opens
it once with ``open_run`` and passes the object, so nothing is reloaded per call.

Examples
--------
>>> import vaekit
>>> result = vaekit.train(dataset="digits", epochs=2, run_dir="/tmp/vaekit-doc", overwrite=True, progress=False)
>>> sorted(vaekit.evaluate("/tmp/vaekit-doc"))
['kl', 'loss', 'n', 'recon']
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, runs
from .config import RunConfig, build_config
from .data import IN_MEMORY, ArrayData, Splits, absolute_paths, data_for_run, load_data, load_splits
from .errors import RunError, VaekitError
from .objectives import REFINE_DRAWS
from .tensors import as_tensor, describe_machine, model_input
from .training import TrainResult, evaluate_terms
from .training import train as _train



def train(preset: str | None = None, *, run_dir: str | Path | None = None, overwrite: bool = False,
          progress: bool = True, pictures: bool = True, **settings: Any) -> TrainResult:
    """Train a model and write its run folder (config, model, metrics, summary, pictures).

    ``settings`` are config fields by name (``dataset="mnist"``, ``epochs=10``, ``hidden=(512, 256)``,
    ...) or ``section.field``; ``None`` values are ignored.
    """
    cfg = build_config(preset, **settings)
    cfg = RunConfig(absolute_paths(cfg.data), cfg.model, cfg.train, cfg.preset)  # readable from any folder
    started = time.perf_counter()
    result = _train(cfg, run_dir, overwrite=overwrite, progress=progress)
    _finish(result, time.perf_counter() - started, pictures)
    return result


def resume(run_dir: str | Path, *, epochs: int | None = None, progress: bool = True,
           pictures: bool = True, data_dir: str | Path | None = None) -> TrainResult:
    """Continue a run from its last checkpoint, optionally to a larger number of epochs.

    The data is searched for as by every command on a run (``data_for_run``); the saved config is kept."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if epochs is not None:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "epochs": epochs}})
    splits = load_splits(data_for_run(cfg.data, data_dir))
    if (run_dir / runs.MODEL_FILE).is_file():
        _check_standardisation(runs.load_model(run_dir / runs.MODEL_FILE)[2], splits, cfg.data.dataset)
    started = time.perf_counter()
    result = _train(cfg, run_dir, resume=True, progress=progress, splits=splits)
    _finish(result, time.perf_counter() - started, pictures)
    return result


def _finish(result: TrainResult, seconds: float, pictures: bool) -> None:
    """summary.json, pictures and report.html (rank 0 only under torchrun)."""
    if not distributed.is_main():
        return
    epochs = [m["seconds"] for m in result.metrics]
    device = next(result.model.parameters()).device
    best = [m["epoch"] for m in result.metrics if m.get("best", True)]
    summary = {"test": result.test, "epochs": len(result.metrics), "best_epoch": best[-1] if best else None,
               "wall_seconds": seconds,
               "mean_epoch_seconds": float(np.mean(epochs)) if epochs else None,
               "device": str(device), "torch": torch.__version__, "processes": distributed.world()[1],
               "machine": describe_machine(device)}
    if result.test_accuracy is not None:  # a model of labels is a classifier too: q(y|x) on the test split
        summary["test_accuracy"] = result.test_accuracy
    from .reporting import SETTINGS
    path = result.run_dir / runs.SUMMARY_FILE
    if path.exists() and SETTINGS in (old := json.loads(path.read_text())):  # a resumed run keeps the user's
        summary[SETTINGS] = old[SETTINGS]  # picture options
    runs.write_json(result.run_dir / runs.SUMMARY_FILE, summary)
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


Run = Any  # a run folder's path, or a fitted vaekit.VAE / Autoencoder / OutlierDetector


def open_run(run: Run, device: str = "auto"):
    """The fitted estimator (``VAE`` or ``Autoencoder``) of ``run``: a run folder loaded once (on CUDA when
    present, for ``device="auto"``), or ``run`` itself when it is already one (a detector gives its model)."""
    from .estimators import OutlierDetector, _LatentEstimator, load

    if isinstance(run, (str, Path)):
        run = load(run, device)
    if isinstance(run, OutlierDetector):
        run = run.estimator_ if hasattr(run, "estimator_") else run
    if getattr(run, "m1_", None) is not None:  # two models, each a run folder of its own
        raise VaekitError("an M1+M2 model is two models: pass its part, est.m1_ (the VAE of the items) or est.m2_ "
                          "(M2 on M1's codes), or its run folder's m1/ or m2/ sub-folder")
    if not isinstance(run, _LatentEstimator) or not hasattr(run, "model_"):
        raise VaekitError(f"expected a run folder or a fitted vaekit estimator, got {type(run).__name__}")
    return run


def load_model(run: Run, device: str = "auto") -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run folder (or a ``.safetensors`` file) and its config."""
    estimator = open_run(run, device)
    return estimator.model_, estimator.config_


def input_data(run: Run, data: str | None = None, split: str = "test", *,
               data_dir: str | Path | None = None) -> ArrayData:
    """The items a command works on: ``data`` (any data spec) or the run's own ``split``.

    Tables are standardised with the run's saved training mean and std.
    """
    estimator = open_run(run)
    return _items(_for_command(estimator.config_, data_dir), estimator.standardizer_, data, split)


def _open(run: Run, data_dir: str | Path | None = None, device: str = "auto"):
    """(estimator, model, config, standardizer) of a run; the config's data folder is the one this command
    searches first (``data_for_run``)."""
    estimator = open_run(run, device)
    return estimator, estimator.model_, _for_command(estimator.config_, data_dir), estimator.standardizer_


def _for_command(cfg: RunConfig, data_dir: str | Path | None) -> RunConfig:
    return RunConfig(data_for_run(cfg.data, data_dir), cfg.model, cfg.train, cfg.preset)


def _check_standardisation(standardizer, splits: Splits, name: str) -> None:
    """A run trained on raw features must not be handed its split standardised (an npy/npz table from before
    vaekit standardised those): the numbers would be silently wrong."""
    if standardizer is None and splits.standardizer is not None:
        raise VaekitError(f"{name}: this model was trained on the raw features (by an older vaekit, which did not "
                          "standardise npy/npz tables); pass its data with --input, or train it again")


def _items(cfg: RunConfig, standardizer, data: str | None, split: str = "test") -> ArrayData:
    if data is None:
        if cfg.data.dataset == IN_MEMORY:
            raise VaekitError("this model was fitted in Python on an in-memory array, so it has no test split of "
                              "its own: pass the data to use with --input (or data=...)")
        splits = load_splits(cfg.data)
        _check_standardisation(standardizer, splits, cfg.data.dataset)
        return {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    items = load_data(data, cfg.data)
    if standardizer is not None:
        items = standardizer.apply(items)
    if items.item_shape != tuple(cfg.model.input_shape):
        raise VaekitError(f"{items.name}: items have shape {items.item_shape}, the model expects "
                          f"{tuple(cfg.model.input_shape)}")
    return items


def evaluate(run: Run | list[Run] | tuple[Run, ...], data: str | None = None, *, seed: int = 0,
             batch_size: int = 1000, nll: bool = False, k: int = 5000, precision: str = "auto",
             proposal_steps: int = 0, progress: bool = False, device: str = "auto",
             data_dir: str | Path | None = None) -> dict[str, Any]:
    """Mean per-sample negative ELBO (``loss``), reconstruction and KL on the run's test split (or ``data``).

    With ``nll``, also the importance-sampled estimate of -log p(x) with ``k`` samples per item (seeded):
    ``nll`` (nats per item), its standard error over items ``nll_stderr``, and ``bits_per_dim``.
    ``precision`` of the NLL's network passes: "auto" (bf16 autocast where the hardware has it; log-weights
    in fp32, their log-mean-exp in fp64), "bf16" or "fp32". On MNIST, bf16 moved the estimate by 0.003 nats
    and halved its time (bench/README.md). The ELBO terms are always computed in fp32.
    ``proposal_steps``: before sampling, q is moved for each item by that many Adam steps on its means and
    log-variances (every layer's), raising that item's IWAE bound (``objectives.refine_proposal``); the model is
    unchanged and the estimate stays a stochastic upper bound on -log p(x), tighter for a given ``k``. 0 (the
    default): q as trained, the published figures' protocol.
    With ``binarize="dynamic"`` runs, the test items are binarized once with the seed, as in Burda et al.
    A denoiser's (a run trained with ``noise``) ELBO terms are for the items corrupted with that noise
    (seeded) against the clean items, as in its training and validation; ``clean_loss``, ``clean_recon`` and
    ``clean_kl`` are the same terms with the encoder reading the clean items, the bound on -log p(x) that the NLL
    (of the clean items) tightens.

    A list of runs (models of the same items) is scored as their uniform mixture p(x) = (1/M) sum_m p_m(x), a
    density model of its own: ``nll`` is then the mixture's, from the members' per-item estimates,
    -log p(x) ~= -log((1/M) sum_m p_m^(x)) (each p_m^ unbiased, so their mean is too and the estimate stays a
    stochastic upper bound on -log p(x), as each member's is), and ``members`` holds each run's own result. It
    needs ``nll``: the ELBO terms are each member's. Models trained side by side on one CPU thread each mix to a
    lower NLL than one model on both threads (bench/README.md, issue #17).
    """
    if proposal_steps and not nll:
        raise VaekitError("--proposal-steps moves q for the importance-sampled -log p(x): pass --nll with it")
    if isinstance(run, (list, tuple)):
        if len(run) == 1:
            run = run[0]
        else:
            return _evaluate_mixture(list(run), data, seed=seed, batch_size=batch_size, nll=nll, k=k,
                                     precision=precision, proposal_steps=proposal_steps, progress=progress,
                                     device=device, data_dir=data_dir)
    return _evaluate_one(run, data, seed=seed, batch_size=batch_size, nll=nll, k=k, precision=precision,
                         proposal_steps=proposal_steps, progress=progress, device=device, data_dir=data_dir)[0]


def _evaluate_one(run: Run, data: str | None, *, seed: int, batch_size: int, nll: bool, k: int, precision: str,
                  proposal_steps: int, progress: bool, device: str, data_dir: str | Path | None,
                  items: ArrayData | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """``evaluate`` of one run, and its per-item -log p(x) estimates (N,) with ``nll`` (else None). ``items``:
    the items ``data`` names for this run, already read (a mixture checks them first)."""
    _, model, cfg, standardizer = _open(run, data_dir, device)
    items = _items(cfg, standardizer, data) if items is None else items
    x = as_tensor(items, next(model.parameters()).device)
    if cfg.data.binarize == "dynamic":  # one fixed binarization of the test set, shared by both numbers
        gen = torch.Generator(device=x.device).manual_seed(seed)
        x = torch.bernoulli(model_input(x), generator=gen)
    terms = evaluate_terms(model, x, batch_size, seed=seed, noise=cfg.data.noise)
    result = {**terms, "n": len(items)}
    if cfg.data.noise:
        clean = evaluate_terms(model, x, batch_size, seed=seed)
        result.update({f"clean_{name}": value for name, value in clean.items()})
    per_item = None
    if nll:
        per_item, bf16 = _nll(model, x, k, seed, precision, progress, proposal_steps)
        result.update(_nll_summary(per_item, math.prod(x.shape[1:]), k, bf16, proposal_steps))
    return result, per_item


def _evaluate_mixture(runs_: list[Run], data: str | None, *, nll: bool, **options: Any) -> dict[str, Any]:
    """The uniform mixture of ``runs_`` (``evaluate``): each member scored on the same items with the same seed,
    then log p(x) = logsumexp_m log p_m(x) - log M per item. The members' items are checked before any is scored."""
    if not nll:
        raise VaekitError("several runs are scored as their uniform mixture, by -log p(x): pass --nll (the ELBO "
                          "terms are each model's own; evaluate one run for them)")
    members = [open_run(run, options["device"]) for run in runs_]  # each loaded once
    first = None
    for run, member in zip(runs_, members):
        _check_nll(member.model_, options["k"], options["precision"], options["proposal_steps"])
        cfg = _for_command(member.config_, options["data_dir"])
        items = _items(cfg, member.standardizer_, data)
        if first is None:
            first = (items, cfg.data.binarize)
            continue
        name = run if isinstance(run, (str, Path)) else type(run).__name__
        if not (len(items) == len(first[0]) and np.array_equal(np.asarray(items.x), np.asarray(first[0].x))):
            raise VaekitError(f"{name}: a mixture's runs must score the same items; this run's {items.name} "
                              f"({len(items)} items) are not the first run's (give them with --input)")
        if cfg.data.binarize != first[1]:
            raise VaekitError(f"{name}: a mixture's runs must read their items alike; this run binarizes "
                              f"{cfg.data.binarize!r}, the first {first[1]!r}")
    # the items are the same for every member (checked above): read once
    scored = [_evaluate_one(member, data, nll=True, items=first[0], **options) for member in members]
    log_p = -np.stack([per_item for _, per_item in scored]).astype(np.float64)  # (M, N) per-item log p_m(x)
    log_mix = np.logaddexp.reduce(log_p, axis=0) - math.log(len(members))  # (N,)
    one = scored[0][0]
    summary = _nll_summary(-log_mix, math.prod(members[0].config_.model.input_shape), one["k"],
                           one["nll_precision"] == "bf16", one["proposal_steps"])
    return {**summary, "n": len(log_mix), "members": [result for result, _ in scored]}


def _check_nll(model: torch.nn.Module, k: int, precision: str, proposal_steps: int = 0) -> None:
    """The one-line errors of ``--nll``, before any work."""
    if not model.importance_sampled:
        raise VaekitError(f"--nll needs a VAE with one Gaussian q(z|x) ({model.cfg.model} has no importance-sampled "
                          "log p(x) here yet; a plain autoencoder defines no likelihood)")
    if k < 1:
        raise VaekitError(f"--k must be at least 1, got {k}")
    if proposal_steps < 0:
        raise VaekitError(f"--proposal-steps must be at least 0, got {proposal_steps}")
    if precision not in ("auto", "bf16", "fp32"):
        raise VaekitError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")


# items a batch of ``objectives.refine_proposal``: x its draws a step, 4,096 rows (B K, D), as large as the
# importance sampling's passes
REFINED_ITEMS = 4096 // REFINE_DRAWS


def _nll(model: torch.nn.Module, x: torch.Tensor, k: int, seed: int, precision: str, progress: bool,
         proposal_steps: int = 0) -> tuple[np.ndarray, bool]:
    """Per-item importance-sampled -log p(x) (N,), and whether the network passes ran in bf16. With
    ``proposal_steps``, q is first moved per item by that many steps (``objectives.refine_proposal``)."""
    from tqdm.auto import tqdm

    from .objectives import importance_sampled_nll, refine_proposal
    from .tensors import bf16_supported

    _check_nll(model, k, precision, proposal_steps)
    bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(x.device))
    gen = torch.Generator(device=x.device).manual_seed(seed)
    model.eval()
    shifts = None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if proposal_steps:
            parts = []
            for start in tqdm(range(0, len(x), REFINED_ITEMS), desc=f"q refined, {proposal_steps} steps",
                              unit="batch", disable=not progress):
                parts.append(refine_proposal(model, model_input(x[start:start + REFINED_ITEMS]), proposal_steps,
                                             generator=gen))
            shifts = [tuple(torch.cat(layer) for layer in zip(*tensors)) for tensors in zip(*parts)]
        # Each pass decodes items x samples rows. ~5,000 rows keep the (rows, D) logits in the CPU's caches
        # between the matmul and the softplus that reads them: 1.4x faster than 20,000 rows on MNIST.
        per_batch = max(1, 20_000 // min(k, 1000))  # items a batch
        chunk = max(1, 5_000 // per_batch)  # samples a pass
        values = []
        with tqdm(total=len(x), desc=f"log p(x), k={k}", unit="item", disable=not progress) as bar:
            for start in range(0, len(x), per_batch):
                part = None if shifts is None else [(d_mu[start:start + per_batch], d_logvar[start:start + per_batch])
                                                    for d_mu, d_logvar in shifts]
                values.append(importance_sampled_nll(model, model_input(x[start:start + per_batch]), k, gen,
                                                     chunk=chunk, shifts=part))
                bar.update(len(values[-1]))
    return torch.cat(values).cpu().numpy(), bf16


def _nll_summary(nll: np.ndarray, dim: int, k: int, bf16: bool, proposal_steps: int = 0) -> dict[str, Any]:
    """Per-item -log p(x) estimates (N,) -> their mean, its standard error over items and bits per value."""
    return {"nll": float(nll.mean()), "nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1
            else float("nan"), "bits_per_dim": float(nll.mean() / (dim * math.log(2))), "k": k,
            "nll_precision": "bf16" if bf16 else "fp32", "proposal_steps": proposal_steps}


@torch.no_grad()
def sample(run: Run, n: int = 64, *, seed: int = 0, draw: bool = False, label: Any = None) -> np.ndarray:
    """``n`` new items decoded from the model's prior (a VAE's own: N(0, I), a mixture or the VampPrior, through
    every stochastic layer; an AE's Gaussian fitted to its training codes, saved with it): (n, *item_shape), the
    likelihood's mean, or with ``draw`` values drawn from it (Bernoulli: 0 or 1; autoregressive: pixel by pixel,
    the model's exact samples). ``label``: a model trained on labels (a few-labels run) decodes every item as
    that class, one of its ``classes_`` (a dataset's class index, e.g. 3 on MNIST, or a name it was fitted on;
    given as it is or as its text, as on the command line); without it, as the uniform mixture of its classes.
    Reproducible for a given ``seed``."""
    if n < 1:
        raise VaekitError(f"number of samples must be at least 1, got {n}")
    estimator = open_run(run)
    model = estimator.model_
    if label is not None:
        if not model.uses_labels:
            raise VaekitError("--class: this run's model was trained without labels and does not decode by class "
                              "(train with --model m2 to get one that does)")
        index = estimator.class_index(label)  # the model's class index
        if index is None:
            names = ", ".join(str(c) for c in estimator.classes_)
            raise VaekitError(f"--class must be one of the run's classes {names}; got {label}")
        label = index
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)

    def chunk(m: int) -> torch.Tensor:  # (m, *item_shape)
        if label is None:
            return model.sample(m, gen, draw)
        return model.sample(m, gen, draw, label=torch.full((m,), label, device=device))

    return torch.cat([chunk(min(4096, n - i)) for i in range(0, n, 4096)]).float().cpu().numpy()


@torch.no_grad()
def reconstruct(run: Run, n: int = 8, data: str | None = None, *, data_dir: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions) of the first ``n`` test items, decoded from the posterior mean."""
    _, model, cfg, standardizer = _open(run, data_dir)
    items = _items(cfg, standardizer, data)
    x = model_input(as_tensor(items, next(model.parameters()).device)[:n])
    return x.cpu().numpy(), model.reconstruct(x).cpu().numpy()


@torch.no_grad()
def encode(run: Run, data: str | None = None, *, items: ArrayData | None = None,
           batch_size: int = 2000, data_dir: str | Path | None = None) -> np.ndarray:
    """Codes of the items: posterior means for a VAE, the code for an AE: (N, L) float32.

    ``items`` (from ``input_data``) skips loading ``data`` again.
    """
    from .latent import posterior_means

    _, model, cfg, standardizer = _open(run, data_dir)
    items = items if items is not None else _items(cfg, standardizer, data)
    x = as_tensor(items, next(model.parameters()).device)
    return posterior_means(model, x, batch_size)


@torch.no_grad()
def decode(run: Run, codes: np.ndarray) -> np.ndarray:
    """Items decoded from codes (N, L): (N, *item_shape), the likelihood's mean."""
    model, cfg = load_model(run)
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != cfg.model.latent_dim or len(codes) == 0:
        raise VaekitError(f"codes must have shape (N, {cfg.model.latent_dim}) with N >= 1, got {codes.shape}")
    if not np.isfinite(codes).all():
        raise VaekitError("codes contain NaN or infinite values")
    z = torch.from_numpy(codes.astype(np.float32)).to(next(model.parameters()).device)
    return torch.cat([model.decode_mean(z[i:i + 4096]) for i in range(0, len(z), 4096)]).float().cpu().numpy()


@torch.no_grad()
def denoise(run: Run, data: str | None = None, *, batch_size: int = 2000,
            data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, denoised): each item reconstructed from its code, (N, *item_shape) in the data's scale."""
    _, model, cfg, standardizer = _open(run, data_dir)
    x = model_input(as_tensor(_items(cfg, standardizer, data), next(model.parameters()).device))
    out = torch.cat([model.reconstruct(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return x.cpu().numpy(), out.float().cpu().numpy()


def anomalies(run: Run, data: str | None = None, *, score: str = "mse", contamination: float = 0.01,
              samples: int = 0, seed: int = 0, normal_class: int | None = None, data_dir: str | Path | None = None):
    """Score items (higher = more anomalous), flag those above the training scores' (1 - contamination)
    quantile, and with labels and a normal class give AUROC and average precision.

    The training scores are saved with the model (``train_scores_``), so only ``data`` is read (the run's
    test split when None). With ``samples`` > 0 (a Monte Carlo ELBO) they are not the saved kind, and the
    training split is read and scored again.

    Returns ``(anomaly.Detection, ArrayData)``. ``normal_class`` defaults to the run's ``--normal-class``;
    items of any other class count as true anomalies.
    """
    from .anomaly import detect, score_items, threshold_at

    estimator, model, cfg, standardizer = _open(run, data_dir)
    device = next(model.parameters()).device
    items = _items(cfg, standardizer, data)
    scores = score_items(model, as_tensor(items, device), score, samples, seed)
    train_scores = estimator.train_scores_.get(score) if samples == 0 else None
    if train_scores is None:  # a Monte Carlo score, or a model file from before the saved scores
        train_scores = score_items(model, as_tensor(load_splits(cfg.data).train, device), score, samples, seed)
    normal = cfg.data.normal_class if normal_class is None else normal_class
    truth = (items.y != normal) if (items.y is not None and normal is not None) else None
    return detect(scores, threshold_at(train_scores, contamination), truth), items


def export(run: str | Path, format: str = "onnx", *, out: str | Path | None = None,
           overwrite: bool = False) -> dict[str, Path]:
    """Export a run's encoder and decoder for another runtime; returns the paths written.

    ``format="onnx"``: ``encoder.onnx``, ``decoder.onnx`` and ``model.json`` in ``out`` (default ``RUN/onnx``),
    see ``vaekit.exporting.export_onnx``.
    """
    from .exporting import export_onnx

    formats = {"onnx": export_onnx}
    if format not in formats:
        raise VaekitError(f"unknown export format {format!r}; choose from {', '.join(formats)}")
    return formats[format](run, out, overwrite=overwrite)


def report(run: str | Path, pictures: bool = True, *, data_dir: str | Path | None = None) -> Path:
    """Rebuild the pictures (unless ``pictures=False``) and ``report.html`` of a run folder."""
    from .reporting import make_pictures, write_report

    read_config(run)  # a clear error for a folder that is not a run
    if pictures:
        make_pictures(run, data_dir)
    return write_report(run)


def plot(run: str | Path, kind: str, out: str | Path | None = None, *, data_dir: str | Path | None = None,
         **options: Any) -> dict:
    """One picture of a run: ``kind`` is "latent", "manifold" (``n``) or "interpolate" (``i``, ``j``, ``steps``).

    Writes ``<run>/<kind>.png`` (or ``out``) and returns the numbers it produced.
    """
    from . import reporting as rep

    functions = {"latent": rep.plot_latent, "manifold": rep.plot_manifold, "interpolate": rep.plot_interpolation}
    if kind not in functions:
        raise VaekitError(f"unknown plot {kind!r}; choose from {', '.join(functions)}")
    read_config(run)
    return functions[kind](rep.load_run(run, data_dir), out=Path(out) if out else None, **options)
