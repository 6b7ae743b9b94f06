"""scikit-learn estimators over vaekit's models: ``VAE``, ``Autoencoder`` and the PyOD-style ``OutlierDetector``.

One fitted object holds everything it needs to score new data: the network (``model_``), its config
(``config_``), the input standardisation (``standardizer_``), the training curve (``history_``) and, for the
detector, the training scores and threshold. ``save(path)`` writes the run-folder format the CLI reads
(safetensors + JSON, no pickle); ``vaekit.load(path)`` opens any run folder, CLI-trained or not, as one.

Input rule (``fit``, ``transform``, ``score_samples``, ...):
  - (N, D) NumPy arrays, pandas DataFrames (``feature_names_in_`` kept) and torch tensors are tables;
  - (N, H, W) are grayscale images, (N, C, H, W) with C in {1, 3} channels-first images and (N, H, W, C) with
    C in {1, 3} channels-last images (channels-first wins when both read); uint8 images are scaled to [0, 1].
Tables with values outside [0, 1] are standardised per feature (``standardize="auto"``) and modelled with a
Gaussian likelihood; data in [0, 1] gets a Bernoulli likelihood, as in the CLI.
"""
from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import runs
from .anomaly import SCORES, score_items, threshold_at
from .config import RunConfig, build_config
from .data import IN_MEMORY, ArrayData, Splits, Standardizer
from .errors import VaekitError
from .tensors import model_input, pick_device
from .training import epoch_rows
from .training import train as train_model

ESTIMATOR_FILE = "estimator.json"
SMALL_DATA = 10_000  # fewer rows than this get the small-data schedule below; more keep the CLI's recipe
SMALL_DATA_STEPS = (500, 3000)  # optimiser steps on small data: 3 per row, within these bounds
SMALL_DATA_BATCH = 64
# With a cosine decay. Measured as detectors (3 seeds, 70 % of normal rows; breast cancer and wine with each class
# normal): 500-3000 steps at lr 1e-2 gave mean AUROC 0.963 (VAE) / 0.955 (AE) in a median 1.7 s per fit; 1000+
# steps at 3e-3 gave 0.963 / 0.950 in 2.6-3.4 s.
SMALL_DATA_LR = 1e-2
# The detector's own small-data schedule: a detector ranks rows, and a model trained to the last detail of a few
# hundred rows ranks new ones worse. Measured (bench/outliers.py's tasks and seeds 0-4, the ELBO score): 300 or
# 500 steps at lr 1e-3 gave mean AUROC 94.1, the estimators' schedule (above) 92.3, and 1,000 steps at 1e-3 92.6.
DETECTOR_STEPS = 300
DETECTOR_LR = 1e-3
ONE_THREAD_BELOW = 2_000_000  # rows x features: small batches on 2 threads ran ~8x slower than on 1 (issue #13)
ELBO_SAMPLES = 16  # draws of z per item in score_samples' ELBO estimate
PREDICT_BATCH = 4096  # rows a model reads at once outside training (transform, reconstruct, ...)
# M1+M2: the parameters SemiSupervisedVAE shares with VAE by name that describe M2 alone, not passed to M1
M2_ONLY = frozenset({"latent_dim", "prior", "prior_components", "early_stopping", "validation_fraction",
                     "n_iter_no_change"})
M1_USED_STD = 0.1  # M1+M2: a dim of M1's code is used when its posterior means vary over X by more than this std


# --- the input rule -------------------------------------------------------------------------------------

def small_data_epochs(n_rows: int, batch_size: int, steps: int) -> int:
    """Epochs that make about ``steps`` optimiser steps over ``n_rows`` rows in batches of ``batch_size``."""
    return math.ceil(steps / math.ceil(n_rows / batch_size))


def _layout(shape: tuple[int, ...]) -> str:
    """How an (N, ...) array reads: "table", "NHW", "NCHW" or "NHWC" (the module docstring's rule)."""
    if len(shape) == 2:
        return "table"
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "NCHW"
    if len(shape) == 4 and shape[3] in (1, 3):
        return "NHWC"
    raise ValueError(f"X has shape {shape}: expected a table (N, D), grayscale images (N, H, W) or images "
                     "(N, C, H, W) / (N, H, W, C) with 1 or 3 channels")


def _to_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(N, ...) in ``layout`` -> the model's (N, D) or (N, C, H, W)."""
    if layout == "NHW":
        return x[:, None]
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _from_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NHW":
        return x[:, 0]
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def _store_params(estimator: BaseEstimator, params: dict[str, Any]) -> None:
    """``__init__`` stores its parameters as given and does nothing else (scikit-learn's rule); the signature
    is the one list of them."""
    for name, value in params.items():
        if name != "self":
            setattr(estimator, name, value)


def _seed(random_state: Any) -> int:
    """The run's seed: an int random_state is the seed itself (as ``vaekit train --seed``); None or a
    RandomState draws one."""
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def _validation_rows(n: int, labels: np.ndarray | None, item_of_row: np.ndarray | None, fraction: float,
                     seed: int) -> np.ndarray:
    """Sorted rows (of n) held out for early stopping: a seeded ``fraction`` of the items, from the unlabelled
    ones (labels < 0) where there are labels; every row of a chosen item (``item_of_row`` (n,); None: a row is
    an item)."""
    pool = np.arange(n) if labels is None else np.flatnonzero(labels < 0)
    items = pool if item_of_row is None else np.unique(item_of_row[pool])
    chosen = np.random.default_rng(seed).permutation(items)[:max(1, int(round(fraction * len(items))))]
    if labels is not None and len(items) <= len(chosen):
        raise ValueError("early_stopping needs unlabelled rows to validate on; there are too few")
    return np.sort(chosen) if item_of_row is None else pool[np.isin(item_of_row[pool], chosen)]


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (None: unchanged)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _LatentEstimator(TransformerMixin, BaseEstimator):
    """What ``VAE`` and ``Autoencoder`` share: input checks, fitting, coding, decoding, saving."""

    _model_kind = "vae"

    # --- input ------------------------------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool) -> np.ndarray:
        """X as (N, *item) float32 (uint8 kept for images), checked once here with scikit-learn's messages."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        if not hasattr(X, "shape"):  # lists and other array-likes
            X = np.asarray(X)
        if len(X.shape) > 2:
            x = check_array(X, allow_nd=True, dtype=None if getattr(X, "dtype", None) == np.uint8 else np.float32)
            layout = _layout(x.shape)
            if reset:
                self.n_features_in_ = int(np.prod(x.shape[1:]))
                self.input_shape_ = tuple(int(s) for s in x.shape[1:])
                self.input_layout_ = layout
            elif tuple(x.shape[1:]) != self.input_shape_:
                raise ValueError(f"X has items of shape {tuple(x.shape[1:])}, but {type(self).__name__} was "
                                 f"fitted on items of shape {self.input_shape_}")
            return _to_model_layout(x, layout)
        if not reset and getattr(self, "input_layout_", "table") != "table":
            raise ValueError(f"X has shape {np.shape(X)}, but {type(self).__name__} was fitted on images of "
                             f"shape {self.input_shape_}")
        x = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        if reset:
            self.input_shape_ = (x.shape[1],)
            self.input_layout_ = "table"
        return x.astype(np.float32, copy=False)

    def _model_input(self, X: Any) -> torch.Tensor:
        """Checked, standardised items on the model's device: (N, *input_shape)."""
        check_is_fitted(self, "model_")
        return self._as_model_input(self._check_X(X, reset=False))

    def _as_model_input(self, x: np.ndarray) -> torch.Tensor:
        """Items ``_check_X`` returned (N, *input_shape), standardised, on the model's device."""
        if self.standardizer_ is not None:
            x = (x - self.standardizer_.mean) / self.standardizer_.std
        return model_input(torch.from_numpy(np.ascontiguousarray(x)).to(self._device()))

    def _device(self) -> torch.device:
        return next(self.model_.parameters()).device

    @staticmethod
    def _in_batches(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
        """``fn`` over the rows of x (N, ...) in batches of PREDICT_BATCH, its outputs (a tensor, or a tuple of
        them) joined along the rows: memory stays bounded whatever N."""
        outs = [fn(b) for b in x.split(PREDICT_BATCH)]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def _output(self, x_model: torch.Tensor) -> np.ndarray:
        """Model-space items (N, *input_shape) back to the user's units and layout."""
        x = x_model.detach().float().cpu().numpy()
        if self.standardizer_ is not None:
            x = x * self.standardizer_.std + self.standardizer_.mean
        return _from_model_layout(x, self.input_layout_)

    # --- fitting ----------------------------------------------------------------------------------------
    def _config_overrides(self, n: int, n_features: int, seed: int) -> dict[str, Any]:
        """Settings for a config from the constructor's parameters; None ones chosen from the data's size (``n``: the
        rows an epoch passes over, labelled ones repeated for a model of labels)."""
        small = n < SMALL_DATA
        batch = self.batch_size or (min(SMALL_DATA_BATCH, n) if small else None)
        epochs = self.epochs
        if epochs is None and small:
            epochs = small_data_epochs(n, batch, min(max(3 * n, SMALL_DATA_STEPS[0]), SMALL_DATA_STEPS[1]))
        hidden = self.hidden if self.hidden is not None else (min(400, max(64, 2 * n_features)),)
        latent = self.latent_dim if self.latent_dim is not None else max(2, min(20, n_features // 4))
        return dict(model=self._model_kind, hidden=tuple(hidden), latent_dim=int(latent), arch=self.arch,
                    conv_channels=tuple(self.conv_channels), likelihood=self.likelihood,
                    gaussian_sigma=self.gaussian_sigma, autoregressive_hidden=self.autoregressive_hidden,
                    autoregressive_window=self.autoregressive_window,
                    autoregressive_units=self.autoregressive_units,
                    autoregressive_order=self.autoregressive_order, epochs=epochs, batch_size=batch,
                    optimizer=self.optimizer,
                    weight_decay=self.weight_decay, weight_decay_scope=self.weight_decay_scope,
                    weight_average=self.weight_average, dropout=self.dropout,
                    grad_clip=self.grad_clip, on_spike=self.on_spike,
                    lr=self.lr if self.lr is not None else (SMALL_DATA_LR if small else None),
                    lr_schedule=self.lr_schedule or ("cosine" if small else None), seed=seed, device=self.device,
                    precision=self.precision, patience=self.n_iter_no_change if self.early_stopping else None,
                    val_fraction=self.validation_fraction, **self._objective_overrides())

    def _objective_overrides(self) -> dict[str, Any]:
        return {}

    def fit(self, X: Any, y: Any = None) -> "_LatentEstimator":
        """Train on every row of ``X`` (a share held out for validation only with ``early_stopping``).

        ``y`` is ignored (unsupervised); it is accepted for pipelines. Returns ``self``.
        """
        return self._fit(self._check_X(X, reset=True))

    def _fit(self, x: np.ndarray, labels: np.ndarray | None = None,
             item_of_row: np.ndarray | None = None) -> "_LatentEstimator":
        """Train on checked items x (N, ...) and, for a model that learns from them, labels (N,) (-1: none).
        ``item_of_row`` (N,): rows that are draws of one item share a number, and validation holds out whole
        items (None: each row is an item)."""
        if len(x) < 2:
            raise ValueError(f"n_samples={len(x)}: {type(self).__name__} needs at least 2 samples to fit")
        is_table = self.input_layout_ == "table"
        in_unit = x.dtype == np.uint8 or (x.min() >= 0 and x.max() <= 1)
        standardize = self.standardize if self.standardize != "auto" else (is_table and not in_unit)
        if standardize and not is_table:
            raise ValueError("standardize=True applies to tables (N, D), not to images")
        self.standardizer_ = Standardizer.fit(x) if standardize else None
        data = ArrayData(x, labels, "X")
        if self.standardizer_ is not None:
            data = self.standardizer_.apply(data)
        seed = _seed(self.random_state)
        train, val = data, data.subset(np.arange(0))
        if self.early_stopping:  # validation from the unlabelled rows: it ranks epochs by the bound, no labels
            val_rows = _validation_rows(len(data), labels, item_of_row, self.validation_fraction, seed)
            train = data.subset(np.setdiff1d(np.arange(len(data)), val_rows))
            val = data.subset(val_rows)
        rows = epoch_rows(len(train), train.y if labels is not None else None)  # labelled rows repeated in an epoch
        cfg = build_config(**self._config_overrides(rows, int(np.prod(x.shape[1:])), seed))
        cfg = replace(cfg, data=replace(cfg.data, dataset=IN_MEMORY))
        splits = Splits(train, val, data.subset(np.arange(0)), self.standardizer_)
        threads = self.n_threads or (1 if x.size < ONE_THREAD_BELOW else None)
        with _threads(threads):
            result = train_model(cfg, splits=splits, progress=bool(self.verbose), files=False)
        self._set_fitted(result.model, result.config, self.standardizer_, result.metrics, result.train_scores)
        return self

    def _set_fitted(self, model: torch.nn.Module, cfg: RunConfig, standardizer: Standardizer | None,
                    history: list[dict], train_scores: dict[str, np.ndarray]) -> None:
        self.model_ = model.eval()
        self.config_ = cfg
        self.standardizer_ = standardizer
        self.history_ = history
        self.n_iter_ = len(history)
        self.latent_dim_ = cfg.model.latent_dim
        self.train_scores_ = train_scores  # {anomaly score: (n,)}: thresholds for `vaekit anomalies` on new data

    # --- coding and decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Codes (N, latent_dim): a VAE's posterior means, an autoencoder's codes. float64 for float64 input,
        else float32."""
        x = self._model_input(X)
        z = self._in_batches(self.model_.embed, x).float().cpu().numpy()
        return z.astype(np.float64) if getattr(X, "dtype", None) == np.float64 else z

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decoded items (the likelihood's mean) for codes ``Z`` (N, latent_dim), in the input's units and layout."""
        check_is_fitted(self, "model_")
        z = check_array(Z, dtype=np.float32)
        if z.shape[1] != self.latent_dim_:
            raise ValueError(f"Z has {z.shape[1]} columns, but the codes have latent_dim={self.latent_dim_}")
        return self._decode(z)

    def _decode(self, z: np.ndarray, generator: torch.Generator | None = None, draw: bool = False) -> np.ndarray:
        """Codes (N, latent_dim) float32 -> items in the input's units and layout: the likelihood's mean, or with
        ``draw`` values drawn from it (a hierarchy's lower layers at their conditional means either way)."""
        model, codes = self.model_, torch.from_numpy(z).to(self._device())
        return self._output(self._in_batches(lambda b: model.decode_items(b, generator, draw), codes))

    @torch.no_grad()
    def reconstruct(self, X: Any) -> np.ndarray:
        """Each item decoded from its own code: X's shape and units."""
        x = self._model_input(X)
        return self._output(self._in_batches(self.model_.reconstruct, x))

    def sample(self, n_samples: int = 1, random_state: Any = None, draw: bool = False) -> np.ndarray:
        """``n_samples`` new items decoded from codes drawn from the model's prior (an autoencoder's: a Gaussian
        fitted to its training codes), in the input's units and layout: the likelihood's mean, or with ``draw``
        values drawn from it (an autoregressive likelihood's exact samples)."""
        check_is_fitted(self, "model_")
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        with torch.no_grad():
            return self._output(torch.cat([self.model_.sample(min(PREDICT_BATCH, n_samples - i), gen, draw)
                                           for i in range(0, int(n_samples), PREDICT_BATCH)]))

    # --- likelihoods ------------------------------------------------------------------------------------
    def _log_jacobian(self) -> float:
        """log |d x_std / d x| summed over features: a density of standardised data becomes one of X."""
        return 0.0 if self.standardizer_ is None else -float(np.log(self.standardizer_.std).sum())

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of ``score_samples``: higher is better (``GridSearchCV`` picks, e.g., ``latent_dim`` by it)."""
        return float(np.mean(self.score_samples(X)))

    # --- saving -----------------------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the fitted estimator as a run folder (safetensors + JSON): every CLI command reads it, and
        ``vaekit.load(path)`` gives it back."""
        check_is_fitted(self, "model_")
        path = runs.prepare_run_dir(path, overwrite)
        runs.write_json(path / runs.CONFIG_FILE, self.config_.to_dict())
        runs.save_model(path / runs.MODEL_FILE, self.model_, self.config_, self.standardizer_,
                        extra_tensors=runs.score_tensors(self.train_scores_))
        for record in self.history_:
            runs.append_metrics(path, record)
        fitted = {"n_features_in_": self.n_features_in_, "input_shape_": list(self.input_shape_),
                  "input_layout_": self.input_layout_}
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        if hasattr(self, "classes_"):
            fitted["classes_"] = self.classes_.tolist()
        runs.write_json(path / ESTIMATOR_FILE, {"class": type(self).__name__, "params": _json_params(self),
                                                "fitted": fitted})
        return path


def _shared_doc(cls: type) -> type:
    """Put the parameters both estimators share into a class docstring's ``{shared}`` (one copy of them)."""
    cls.__doc__ = cls.__doc__.replace("    {shared}\n", _SHARED_DOC + "\n")
    return cls


_SHARED_DOC = """
    Parameters
    ----------
    latent_dim : int or None
        Size of the code. None: ``max(2, min(20, n_features // 4))``.
    hidden : tuple of int or None
        Encoder hidden widths (the decoder mirrors them). None: ``(min(400, max(64, 2 * n_features)),)``.
    arch : {"mlp", "conv"}
        Dense layers, or stride-2 convolutions (images only) with ``conv_channels``.
    likelihood : {"auto", "bernoulli", "bernoulli-autoregressive", "gaussian", "gaussian-learned"}
        p(x | z). "auto": Bernoulli for data in [0, 1], else Gaussian with ``gaussian_sigma``.
        "bernoulli-autoregressive": each value also conditioned on the values before it (a masked linear layer
        under the decoder, trained with the model): vaekit's best likelihood on binarized MNIST (bench/README.md);
        pair it with ``kl_warmup`` or ``free_bits``, or the code may go unused.
    autoregressive_hidden, autoregressive_window, autoregressive_units : int
        "bernoulli-autoregressive" only: hidden units of the masked layer (MADE's masks; 0, the default: linear),
        the image rows above each value that its linear part reads (and, in the colour planes before its own, the
        rows within that many of its own; 0, the default: all the values before it; images only; on static MNIST
        one row gave 83.29 nats against 83.81 for the whole past, bench/README.md),
        and, with a window, nonlinear units per value that read the decoder's logit and a masked convolution of
        the values near it (0, the default: none).
    autoregressive_order : {"rows", "columns"}
        "bernoulli-autoregressive" on images: the order the values condition on each other, raster ("rows", the
        default) or column by column ("columns": the image transposed, a window then counting columns).
    epochs, batch_size, lr, lr_schedule : int, int, float, {"constant", "cosine"}, or None
        The schedule. None on fewer than 10,000 rows: batch 64, lr 1e-2 with cosine decay, and epochs for
        3 steps per row (500 to 3,000 steps); on more, the CLI's recipe (batch 512, lr 1.5e-2, ~3,000 steps).
    optimizer, weight_decay : {"adam", "rmsprop"}, float
        Adam (default) or RMSprop; weight decay shrinks the weights by lr x ``weight_decay`` each step, decoupled
        from Adam's moments (AdamW, Loshchilov & Hutter 2019), an L2 penalty under RMSprop. 0 (default): off.
    weight_decay_scope : {"all", "weights"}
        What the decay shrinks: "all" (default) every parameter; "weights" the networks' weight matrices only, not
        their biases nor a learned prior's parameters (the VampPrior's pseudo-inputs, a mixture's components).
    weight_average : float
        Polyak averaging: the fitted model is an exponential moving average of the weights, each step weighing the
        new ones by 1 - ``weight_average`` (e.g. 0.999), the raw weights being the ones trained. 0 (default): off.
    dropout : float
        Dropout on the hidden units of the decoder (and of each p(z_l | z_l+1) of a hierarchy) while fitting, a
        regulariser against overfitting; off in every use of the fitted model. 0 (default): off.
    grad_clip : float or None
        Clip the gradient's global norm to this value each step. None (default): off.
    on_spike : {"warn", "rollback"}
        An epoch whose training loss jumps by more than half: "warn" (default) says so with a ``RuntimeWarning``;
        "rollback" also undoes it (weights and optimiser state back to the epoch before), halves the lr for the
        rest of the fit and trains the epoch again, at most 3 times a fit, and does the same for a loss or
        weights gone NaN or inf (which otherwise stop the fit; in the first epoch it goes back to the start).
    early_stopping : bool
        Hold out ``validation_fraction`` of the rows and stop after ``n_iter_no_change`` epochs without a
        better validation loss, keeping the best epoch's weights. Off: every row trains.
    standardize : "auto" or bool
        Per-feature standardisation of tables ("auto": when values leave [0, 1]); part of the fitted model.
    n_threads : int or None
        torch threads while fitting. None: 1 for small data (faster on small batches), else torch's default.
    device : str
        "auto" (CUDA when present), "cpu", "cuda", "cuda:1".
    random_state : int, RandomState or None
        Seeds the weights, batches and score draws.
    verbose : bool
        Show the training progress bar.

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained network, in evaluation mode.
    config_ : vaekit.RunConfig
        Every setting of the fit, as the CLI writes it to ``config.json``.
    standardizer_ : Standardizer or None
    history_ : list of dict
        Per-epoch training (and validation) loss terms, the learning rate and wall seconds.
    n_features_in_, feature_names_in_, input_shape_, latent_dim_, n_iter_
"""


@_shared_doc
class VAE(_LatentEstimator):
    """Variational autoencoder (Kingma & Welling 2014) as a scikit-learn transformer.

    ``transform`` gives posterior means, ``inverse_transform`` decodes codes, ``sample`` draws new items and
    ``score_samples`` the per-sample ELBO (or, with ``n_importance_samples``, the importance-sampled
    log-likelihood, Burda et al. 2016), both in nats of X's own units (standardisation accounted for).
    {shared}
    beta, kl_warmup, free_bits, iw_samples : float, float, float, int
        The KL weight (beta-VAE), its linear warm-up in epochs, free bits per latent dim, and K > 1 to train
        on the IWAE bound.
    iw_from : float
        With ``iw_samples`` > 1, the share of the planned run (after the lr warm-up) trained on the ELBO (with
        beta, warm-up and free bits) before the IWAE bound takes over (0: the bound from the start).
    prior : {"normal", "mog", "vamp"}
        p(z): N(0, I); a learned mixture of ``prior_components`` Gaussians; or the VampPrior (Tomczak & Welling
        2018), the mixture of the posteriors of ``prior_components`` learned pseudo-inputs.
    hierarchy : tuple of int
        Sizes of stochastic layers below the code, from the data up: ``(40,)`` with ``latent_dim=40`` is the
        two-layer HVAE of Tomczak & Welling (2018). ``transform`` gives the code (the top layer's posterior
        means); ``sample`` draws every layer; ``score_samples`` uses the whole inference network.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> import vaekit
    >>> X = load_digits().data / 16.0
    >>> vae = vaekit.VAE(latent_dim=2, epochs=5, random_state=0).fit(X)
    >>> vae.transform(X[:3]).shape
    (3, 2)
    >>> vae.sample(4, random_state=0).shape
    (4, 64)
    """

    _model_kind = "vae"

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None, arch: str = "mlp",
                 conv_channels: tuple[int, ...] = (32, 64), likelihood: str = "auto", gaussian_sigma: float = 1.0,
                 autoregressive_hidden: int = 0, autoregressive_window: int = 0, autoregressive_units: int = 0,
                 autoregressive_order: str = "rows", beta: float = 1.0, kl_warmup: float = 0.0,
                 free_bits: float = 0.0, iw_samples: int = 1, iw_from: float = 0.0,
                 prior: str = "normal", prior_components: int = 500, hierarchy: tuple[int, ...] = (),
                 epochs: int | None = None, batch_size: int | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, weight_decay_scope: str = "all", weight_average: float = 0.0,
                 dropout: float = 0.0,
                 grad_clip: float | None = None, on_spike: str = "warn",
                 lr: float | None = None, lr_schedule: str | None = None,
                 early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 standardize: str | bool = "auto",
                 n_threads: int | None = None, device: str = "auto", precision: str = "auto",
                 random_state: Any = None, verbose: bool = False):
        _store_params(self, locals())

    def _objective_overrides(self) -> dict[str, Any]:
        return dict(beta=self.beta, kl_warmup=self.kl_warmup, free_bits=self.free_bits, iw_samples=self.iw_samples,
                    iw_from=self.iw_from, prior=self.prior, prior_components=self.prior_components,
                    hierarchy=tuple(self.hierarchy))

    @torch.no_grad()
    def _posterior(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mean and log-variance of q(z|x) of the code for model input x (``_as_model_input``): (N, latent_dim)
        float32 each."""
        return tuple(t.float().cpu().numpy() for t in self._in_batches(self.model_.encode, x))

    @torch.no_grad()
    def score_samples(self, X: Any, n_importance_samples: int | None = None) -> np.ndarray:
        """Per-sample ELBO, log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z)) (Kingma & Welling 2014, eq. 3),
        estimated with 16 draws of z; or, with ``n_importance_samples=k``, the importance-sampled log-likelihood
        log (1/k) sum_k p(x, z_k) / q(z_k | x) (Burda et al. 2016, eq. 8 as k grows). Higher is more likely.
        (N,) float64, in nats of X's units. The draws are shared by all items, so an item's score does not
        depend on the others in X."""
        x = self._model_input(X)
        k = n_importance_samples or ELBO_SAMPLES
        out = []
        for xb in x.split(max(1, 65536 // k)):
            # the same draws for every batch, and within one for every item ((K, 1, L) noise)
            gen = torch.Generator(device=x.device).manual_seed(self.config_.train.seed)
            log_w = self.model_.log_weight_terms(xb, k, gen, shared=True)["log_w"].double()  # (K, B)
            out.append(torch.logsumexp(log_w, 0) - math.log(k) if n_importance_samples else log_w.mean(0))
        return torch.cat(out).cpu().numpy() + self._log_jacobian()


@_shared_doc
class Autoencoder(_LatentEstimator):
    """Deterministic autoencoder as a scikit-learn transformer (``transform`` = codes).

    ``score_samples`` is the reconstruction log-likelihood log p(x | z = f(x)) (not a bound on log p(x)), and
    ``sample`` decodes codes drawn from a Gaussian fitted to the training codes (``code_mean_``,
    ``code_cov_``).
    {shared}
    Examples
    --------
    >>> from sklearn.datasets import load_wine
    >>> import vaekit
    >>> X = load_wine().data
    >>> ae = vaekit.Autoencoder(latent_dim=3, epochs=5, random_state=0).fit(X)
    >>> ae.reconstruct(X[:2]).shape
    (2, 13)
    """

    _model_kind = "ae"

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None, arch: str = "mlp",
                 conv_channels: tuple[int, ...] = (32, 64), likelihood: str = "auto", gaussian_sigma: float = 1.0,
                 autoregressive_hidden: int = 0, autoregressive_window: int = 0, autoregressive_units: int = 0,
                 autoregressive_order: str = "rows", epochs: int | None = None, batch_size: int | None = None,
                 optimizer: str = "adam",
                 weight_decay: float = 0.0, weight_decay_scope: str = "all", weight_average: float = 0.0,
                 dropout: float = 0.0,
                 grad_clip: float | None = None, on_spike: str = "warn",
                 lr: float | None = None, lr_schedule: str | None = None,
                 early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 standardize: str | bool = "auto",
                 n_threads: int | None = None, device: str = "auto", precision: str = "auto",
                 random_state: Any = None, verbose: bool = False):
        _store_params(self, locals())

    def _set_fitted(self, model: torch.nn.Module, *args: Any) -> None:
        super()._set_fitted(model, *args)
        tril = model.code_scale_tril.double().cpu()  # the model's fitted code prior (models/ae.py)
        self.code_mean_ = model.code_mean.double().cpu().numpy()
        self.code_cov_ = (tril @ tril.T).numpy()

    @torch.no_grad()
    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x | z = f(x)) per sample, (N,) float64 in nats of X's units; higher = better reconstructed."""
        x = self._model_input(X)
        log_px = self._in_batches(lambda xb: -self.model_.recon_nll(self.model_.embed(xb), xb).double(), x)
        return log_px.cpu().numpy() + self._log_jacobian()


class OutlierDetector(BaseEstimator):
    """Anomaly detection with PyOD's interface over a VAE or an autoencoder (``model``).

    ``decision_function`` gives anomaly scores (higher = more anomalous); ``threshold_`` is the (1 -
    ``contamination``) quantile of the scores of rows held out of training (``threshold_holdout``);
    ``predict`` gives 0 (inlier) / 1 (outlier) against it; ``decision_scores_`` and ``labels_`` are the
    training rows' scores and labels, as in PyOD, so code written for
    ``pyod.models.auto_encoder.AutoEncoder`` or ``pyod.models.vae.VAE`` runs with the class name changed.

    Parameters
    ----------
    model : {"vae", "ae"}
    anomaly_score : {"auto", "mse", "recon", "elbo"}
        "elbo": the negative ELBO (VAE only); "recon": -log p(x | z = code(x)) under the model's likelihood;
        "mse": squared error of the reconstruction (PyOD's score). "auto" (default): "elbo" for a VAE, "recon"
        for an autoencoder.
    contamination : float in (0, 0.5)
        The share of normal rows expected above ``threshold_``.
    threshold_holdout : float in [0, 1)
        Share of the rows (of 10 or more) held out of training to set ``threshold_``: the (1 - contamination)
        quantile of their scores, so about ``contamination`` of new normal rows are flagged. 0: PyOD's way, the
        training rows' own scores (which the model fits more closely than new rows).
    epochs, lr : int, float or None
        None on fewer than 10,000 rows: about 300 optimiser steps at lr 1e-3 (a detector ranks new rows better
        from a model that has not fitted its few training rows to the last detail; see ``DETECTOR_STEPS``);
        on more, the estimators' defaults.
    latent_dim, hidden, batch_size, optimizer, weight_decay, weight_decay_scope, weight_average, dropout, grad_clip,
    on_spike, early_stopping, standardize, n_threads, device, random_state, verbose
        As for ``vaekit.VAE`` (PyOD's autoencoders have ``weight_decay`` and ``dropout_rate`` too).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> import vaekit
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> det = vaekit.OutlierDetector(epochs=5, random_state=0).fit(X[y == 1])
    >>> det.decision_scores_.shape  # one score per training row
    (357,)
    >>> det.predict(X[:2]).shape
    (2,)
    """

    def __init__(self, model: str = "vae", anomaly_score: str = "auto", contamination: float = 0.1,
                 threshold_holdout: float = 0.2, latent_dim: int | None = None,
                 hidden: tuple[int, ...] | None = None, epochs: int | None = None, batch_size: int | None = None,
                 optimizer: str = "adam", weight_decay: float = 0.0, weight_decay_scope: str = "all",
                 weight_average: float = 0.0,
                 dropout: float = 0.0, grad_clip: float | None = None, on_spike: str = "warn",
                 lr: float | None = None, early_stopping: bool = False,
                 standardize: str | bool = "auto", n_threads: int | None = None,
                 device: str = "auto", random_state: Any = None, verbose: bool = False):
        _store_params(self, locals())

    def _score_name(self) -> str:
        """The anomaly score in use: ``anomaly_score`` with "auto" resolved by ``model``."""
        if self.anomaly_score == "auto":
            return "elbo" if self.model == "vae" else "recon"
        return self.anomaly_score

    def _make_estimator(self) -> _LatentEstimator:
        """The unfitted model (its schedule set by ``_schedule`` once the rows are counted)."""
        kinds = {"vae": VAE, "ae": Autoencoder}
        if self.model not in kinds:
            raise ValueError(f"model={self.model!r}: choose from {', '.join(kinds)}")
        if self.anomaly_score not in SCORES + ("auto",):
            raise ValueError(f"anomaly_score={self.anomaly_score!r}: choose from auto, {', '.join(SCORES)}")
        if self.anomaly_score == "elbo" and self.model != "vae":
            raise ValueError("anomaly_score='elbo' needs model='vae'")
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination={self.contamination}: must be in (0, 0.5)")
        model = kinds[self.model]
        # every parameter the detector shares with the model, by name (``model``, the score and the threshold's
        # are the detector's own)
        shared = set(model._get_param_names()) & set(self._get_param_names())
        return model(**{name: getattr(self, name) for name in shared})

    def _schedule(self, n_fit: int) -> dict[str, Any]:
        """Epochs and lr for ``n_fit`` training rows: the detector's small-data schedule where they are None."""
        if n_fit >= SMALL_DATA:
            return {}
        batch = self.batch_size or min(SMALL_DATA_BATCH, n_fit)
        return {"epochs": self.epochs or small_data_epochs(n_fit, batch, DETECTOR_STEPS),
                "lr": self.lr or DETECTOR_LR}

    def fit(self, X: Any, y: Any = None) -> "OutlierDetector":
        """Fit the model on ``X`` (taken as mostly normal; ``y`` is ignored) and set the threshold."""
        if not 0.0 <= self.threshold_holdout < 1.0:
            raise ValueError(f"threshold_holdout={self.threshold_holdout}: must be in [0, 1)")
        estimator = self._make_estimator()
        # checked once, here: the estimator takes X's description (a DataFrame's column names too) and the rows
        # as the model reads them
        x = estimator._check_X(X, reset=True)
        n_held = int(round(self.threshold_holdout * len(x))) if len(x) >= 10 else 0
        estimator.set_params(**self._schedule(len(x) - n_held))
        fit_rows = np.arange(len(x))
        if n_held:
            order = np.random.default_rng(_seed(self.random_state)).permutation(len(x))
            fit_rows, held = np.sort(order[n_held:]), np.sort(order[:n_held])
        estimator._fit(x[fit_rows])
        scores = self._score_input(estimator, estimator._as_model_input(x))
        # The model fits its own training rows more closely than new rows: a threshold from their scores
        # flagged 54-100 % of held-out normal rows at contamination 0.1 (bench/outliers.py). Rows it did not
        # train on set it instead, so ~contamination of new normal rows are flagged.
        self._set_fitted(estimator, scores, scores[held] if n_held else scores)
        return self

    def _set_fitted(self, estimator: _LatentEstimator, train_scores: np.ndarray,
                    threshold_scores: np.ndarray | None = None) -> None:
        self.estimator_ = estimator
        self.n_features_in_ = estimator.n_features_in_
        if hasattr(estimator, "feature_names_in_"):
            self.feature_names_in_ = estimator.feature_names_in_
        self.decision_scores_ = train_scores
        self.threshold_ = threshold_at(train_scores if threshold_scores is None else threshold_scores,
                                       self.contamination)
        self.labels_ = (train_scores > self.threshold_).astype(int)

    def _score_input(self, estimator: _LatentEstimator, x: torch.Tensor) -> np.ndarray:
        """Anomaly scores (N,) of the model input x (``_as_model_input``)."""
        return score_items(estimator.model_, x, self._score_name(), seed=estimator.config_.train.seed)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores (N,) float64: higher = more anomalous (PyOD's sign)."""
        check_is_fitted(self, "estimator_")
        return self._score_input(self.estimator_, self.estimator_._model_input(X))

    def predict(self, X: Any) -> np.ndarray:
        """1 for rows scoring above ``threshold_`` (outliers), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """(N, 2): [P(inlier), P(outlier)]. "linear": the score min-max scaled by the training scores and
        clipped to [0, 1]; "unify": erf of the score standardised by the training scores (Kriegel et al. 2011),
        PyOD's two methods."""
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            span = train.max() - train.min()
            p = np.clip((scores - train.min()) / (span if span > 0 else 1.0), 0, 1)
        elif method == "unify":
            from scipy.special import erf

            p = np.clip(erf((scores - train.mean()) / ((train.std() or 1.0) * math.sqrt(2))), 0, 1)
        else:
            raise ValueError(f"method={method!r}: choose 'linear' or 'unify'")
        return np.column_stack([1 - p, p])

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """The model's run folder (see ``VAE.save``) with the detector's settings and training scores."""
        check_is_fitted(self, "estimator_")
        path = self.estimator_.save(path, overwrite)
        info = json.loads((path / ESTIMATOR_FILE).read_text())
        info["detector"] = {"params": _json_params(self),
                            "decision_scores_": self.decision_scores_.tolist(), "threshold_": self.threshold_}
        runs.write_json(path / ESTIMATOR_FILE, info)
        return path


def _json_params(estimator: BaseEstimator) -> dict[str, Any]:
    """Constructor parameters as JSON values: tuples as lists, a RandomState (not storable) as None."""
    params = estimator.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


class SemiSupervisedVAE(ClassifierMixin, _LatentEstimator):
    """A classifier from a few labels and many unlabelled items: the semi-supervised VAE "M2" of Kingma, Rezende,
    Mohamed & Welling (2014), and their stacked "M1+M2" with ``m1_latent_dim``.

    scikit-learn's semi-supervised convention: ``fit(X, y)`` with ``y == -1`` for the unlabelled items
    (``sklearn.semi_supervised``). M2 treats the class as a latent variable: labelled items train the
    classifier q(y|x) (weighted by ``alpha``) and the bound given their class; unlabelled items train the bound
    with the class marginalised over q(y|x). ``predict``/``predict_proba`` use q(y|x); ``score`` is accuracy;
    ``transform`` gives the means of q(z | x, y); ``sample(n, y=c)`` draws items of class c.

    Parameters
    ----------
    latent_dim, hidden, arch, conv_channels, likelihood, autoregressive_hidden, autoregressive_window,
    autoregressive_units, autoregressive_order, epochs, batch_size, optimizer, weight_decay, weight_decay_scope,
    weight_average, dropout, grad_clip, on_spike, lr, lr_schedule,
    standardize, n_threads, device, precision, random_state, verbose
        As for ``vaekit.VAE``.
    classifier_arch : {"mlp", "conv"} or None
        The network of the classifier q(y|x); None: ``arch``. A conv classifier beside an MLP VAE (images only)
        runs one conv net per view, where a conv VAE would run K conv decoders per unlabelled item.
    alpha : float or None
        Weight of the labelled items' classification loss. None: 0.1 x unlabelled / labelled items (the
        paper's 0.1 N, in batch means). The labelled items are repeated so they make about a quarter of each
        epoch's rows.
    consistency, consistency_threshold : float
        Images only (M2 on X itself): weight, in units of ``alpha``, of FixMatch's consistency term (Sohn et al.
        2020): q(y|x) of a strongly augmented view (rotated, scaled, shifted) learns each labelled item's class and
        each unlabelled item's class under a weakly augmented (shifted) view where that is at least
        ``consistency_threshold`` probable. 0 (the default): Kingma et al.'s M2 alone.
    m1_latent_dim : int or None
        M1+M2: first fit a ``vaekit.VAE`` with this code size (M1) on all of X, unsupervised, then M2 (an MLP,
        Gaussian likelihood with a learned sigma) on the dims of its code that M1 uses. None: M2 on X itself.
    m1_draws : int
        M1+M2: M2 learns from this many draws of each item's code z1 ~ q(z1|x) in ``epochs / m1_draws`` passes
        (Kingma et al. draw afresh every batch), and classifies by the posterior means; memory: N x m1_draws x
        the used dims, float32.
    prior, prior_components : {"normal", "mog", "vamp"}, int
        M2's p(z), as ``vaekit.VAE``'s.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> import vaekit
    >>> X, y = load_digits(return_X_y=True)
    >>> y_few = np.where(np.arange(len(y)) < 100, y, -1)  # 100 labels; -1 = unlabelled
    >>> clf = vaekit.SemiSupervisedVAE(epochs=2, random_state=0).fit(X / 16.0, y_few)
    >>> clf.predict(X[:3] / 16.0).shape
    (3,)
    >>> clf.sample(2, y=7, random_state=0).shape
    (2, 64)
    """

    _model_kind = "m2"

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None, arch: str = "mlp",
                 conv_channels: tuple[int, ...] = (32, 64), classifier_arch: str | None = None,
                 likelihood: str = "auto", gaussian_sigma: float = 1.0, autoregressive_hidden: int = 0,
                 autoregressive_window: int = 0, autoregressive_units: int = 0, autoregressive_order: str = "rows",
                 alpha: float | None = None,
                 consistency: float = 0.0, consistency_threshold: float = 0.95,
                 m1_latent_dim: int | None = None, m1_draws: int = 10, prior: str = "normal",
                 prior_components: int = 500, epochs: int | None = None,
                 batch_size: int | None = None, optimizer: str = "adam", weight_decay: float = 0.0,
                 weight_decay_scope: str = "all",
                 weight_average: float = 0.0, dropout: float = 0.0, grad_clip: float | None = None,
                 on_spike: str = "warn", lr: float | None = None,
                 lr_schedule: str | None = None, early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 10, standardize: str | bool = "auto", n_threads: int | None = None,
                 device: str = "auto", precision: str = "auto", random_state: Any = None, verbose: bool = False):
        _store_params(self, locals())

    def _objective_overrides(self) -> dict[str, Any]:
        return dict(alpha=self.alpha, consistency=self.consistency, consistency_threshold=self.consistency_threshold,
                    prior=self.prior, prior_components=self.prior_components, classifier_arch=self.classifier_arch)

    def fit(self, X: Any, y: Any) -> "SemiSupervisedVAE":
        """Train on every row of ``X``; ``y`` (N,) labels with -1 for the unlabelled rows. Returns ``self``."""
        return self._fit_labelled(X, y)

    def _fit_labelled(self, X: Any, y: Any, item_of_row: np.ndarray | None = None) -> "SemiSupervisedVAE":
        """``fit``; ``item_of_row`` as ``_fit``'s (M1+M2's M2 learns from several draws of each item)."""
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != _num_rows(X):
            raise ValueError(f"y must have one label per row of X ({_num_rows(X)}), got shape {y.shape}")
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)  # a refit (e.g. M2 after M1+M2) keeps nothing of the last fit
        labelled = y != -1
        self.classes_ = np.unique(y[labelled])
        if len(self.classes_) < 2:
            raise ValueError(f"y has {len(self.classes_)} labelled class(es); {type(self).__name__} needs at least "
                             "2 (-1 marks the unlabelled rows)")
        index = np.full(len(y), -1, dtype=np.int64)
        index[labelled] = np.searchsorted(self.classes_, y[labelled])
        if self.m1_latent_dim is None:
            self.m1_ = self.m2_ = None
            return self._fit(self._check_X(X, reset=True), index, item_of_row)
        # M1+M2 (Kingma et al. 2014, sec. 3.1.3): M2 learns on M1's codes
        if self.consistency:
            raise ValueError("consistency compares augmented views of images; with m1_latent_dim, M2 sees M1's "
                             "codes instead: use one or the other")
        if self.classifier_arch == "conv":
            raise ValueError("classifier_arch='conv' reads images; with m1_latent_dim, M2's classifier sees M1's codes")
        if not isinstance(self.m1_draws, (int, np.integer)) or self.m1_draws < 1:
            raise ValueError(f"m1_draws must be a positive integer, got {self.m1_draws!r}")
        # M1 takes every parameter it shares with this estimator by name, but those of M2's own: its code (size
        # and prior; M1 keeps the standard normal, whose unused dims M2 drops) and its early stopping
        shared = (set(VAE._get_param_names()) & set(self._get_param_names())) - M2_ONLY
        m1 = VAE(latent_dim=self.m1_latent_dim, **{name: getattr(self, name) for name in shared})
        x = m1._check_X(X, reset=True)  # checked once: M1 takes X's description and trains on the rows
        mean, logvar = m1._fit(x)._posterior(m1._as_model_input(x))  # (N, L) each
        # As Kingma et al.'s code does (github.com/dpkingma/nips14-ssl, learn_yz_x_ss.py): M2 models only the
        # dims M1 uses, those whose posterior means vary over X (std > 0.1); an unused dim (KL ~ 0) is noise
        # around 0 that M2's likelihood and classifier would have to fit. And M2 learns from draws z1 ~ q(z1|x),
        # not the means (that code redraws them every batch): m1_draws draws of each item, epochs / m1_draws
        # passes over them, so each item is seen about ``epochs`` times.
        dims = np.flatnonzero(mean.std(0) > M1_USED_STD)
        dims = dims if len(dims) else np.arange(mean.shape[1])
        mean, sd = mean[:, dims], np.exp(0.5 * logvar[:, dims])  # (N, D) each
        rng = np.random.default_rng(_seed(self.random_state))
        codes = np.concatenate([mean + sd * rng.standard_normal(mean.shape, dtype=np.float32)
                                for _ in range(self.m1_draws)])  # (m1_draws x N, D), draw-major
        epochs = None if self.epochs is None else max(1, round(self.epochs / self.m1_draws))
        # M2 reads the codes as they are (on the prior's unit scale already), as the paper's code does, with a
        # Gaussian likelihood of learned sigma (that code learns a variance too): on MNIST with 100 labels (draw 0,
        # M1 and M2 40 epochs each) sigma fixed at 1 gave 12.83 % test error, learned 5.55 %
        params = {**self.get_params(), "m1_latent_dim": None, "arch": "mlp", "classifier_arch": None,
                  "likelihood": "gaussian-learned", "autoregressive_hidden": 0, "autoregressive_window": 0,
                  "autoregressive_units": 0, "autoregressive_order": "rows", "epochs": epochs, "standardize": False}
        m2 = SemiSupervisedVAE(**params)._fit_labelled(codes, np.tile(y, self.m1_draws),
                                                       np.tile(np.arange(len(mean)), self.m1_draws))
        self._set_parts(m1, m2, dims)
        return self

    def _set_parts(self, m1: VAE, m2: "SemiSupervisedVAE", m1_dims: np.ndarray) -> None:
        """M1+M2's fitted state: the parts, the dims of M1's code that M2 models, X's description from M1, the
        codes' size and history from M2."""
        self.m1_, self.m2_, self.m1_dims_ = m1, m2, np.asarray(m1_dims, dtype=np.int64)
        for name in ("n_features_in_", "input_shape_", "input_layout_", "feature_names_in_"):
            if hasattr(m1, name):
                setattr(self, name, getattr(m1, name))
        self.latent_dim_, self.history_ = m2.latent_dim_, m2.history_

    def _set_fitted(self, model: torch.nn.Module, *args: Any) -> None:
        super()._set_fitted(model, *args)
        if not hasattr(self, "classes_"):  # a CLI run: its labels were the dataset's class indices
            self.classes_ = np.arange(model.cfg.n_classes)

    def _m2(self, X: Any) -> tuple["SemiSupervisedVAE", torch.Tensor]:
        """The part that holds M2, and X as its input (M1's codes for M1+M2)."""
        check_is_fitted(self, "classes_")
        if getattr(self, "m1_", None) is None:
            return self, self._model_input(X)
        return self.m2_, self.m2_._model_input(self.m1_.transform(X)[:, self.m1_dims_])

    @torch.no_grad()
    def predict_proba(self, X: Any) -> np.ndarray:
        """q(y | x): (N, n_classes) float64, columns in ``classes_`` order."""
        part, x = self._m2(X)
        logits = self._in_batches(part.model_.class_logits, x).float()
        return logits.softmax(-1).double().cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Means of q(z | x, y) with y = q(y|x)'s probabilities: (N, latent_dim)."""
        part, x = self._m2(X)
        return self._in_batches(part.model_.embed, x).float().cpu().numpy()

    def class_index(self, y: Any) -> int | None:
        """The index in ``classes_`` of class ``y``, matched by value, else by its text ("3" names 3 or 3.0 as on
        the command line, "cat" names "cat"); None when no class matches."""
        check_is_fitted(self, "classes_")
        classes = self.classes_.tolist()
        wanted = [y]
        if isinstance(y, str):
            try:
                wanted.append(float(y))
            except ValueError:
                pass
        for w in wanted:
            for i, c in enumerate(classes):
                if c == w:
                    return i
        texts = [str(c) for c in classes]
        return texts.index(str(y)) if str(y) in texts else None

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: Any = None, y: Any = None, draw: bool = False) -> np.ndarray:
        """``n_samples`` new items of class ``y`` (one of ``classes_``; None: classes drawn uniformly), decoded
        from codes drawn from the model's prior (N(0, I) unless ``prior`` says otherwise): in X's units and
        layout; the likelihood's mean, or with ``draw`` values drawn from it (M1+M2: M1's code drawn from M2's
        likelihood given the class, then the item from M1's)."""
        check_is_fitted(self, "classes_")
        rng = check_random_state(random_state)
        if y is None:
            labels = rng.randint(len(self.classes_), size=n_samples)
        else:
            index = self.class_index(y)
            if index is None:
                raise ValueError(f"y={y!r} is not one of the fitted classes {self.classes_.tolist()}")
            labels = np.full(n_samples, index)
        part = self if getattr(self, "m1_", None) is None else self.m2_
        device = part._device()
        gen = torch.Generator(device=device).manual_seed(rng.randint(2**31 - 1))
        out = part._output(part.model_.sample(n_samples, gen, draw, label=torch.from_numpy(labels).to(device)))
        if part is self:
            return out
        codes = np.zeros((n_samples, self.m1_.latent_dim_), dtype=np.float32)  # M1's unused dims: 0, the prior's mean
        codes[:, self.m1_dims_] = out
        m1_gen = torch.Generator(device=self.m1_._device()).manual_seed(rng.randint(2**31 - 1))
        return self.m1_._decode(codes, m1_gen, draw)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """A run folder (see ``VAE.save``); M1+M2 keeps its two parts in sub-folders ``m1`` and ``m2``."""
        if getattr(self, "m1_", None) is None:
            return super().save(path, overwrite)
        path = runs.prepare_run_dir(path, overwrite)
        self.m1_.save(path / "m1", overwrite)
        self.m2_.save(path / "m2", overwrite)
        fitted = {"classes_": self.classes_.tolist(), "m1_dims_": self.m1_dims_.tolist()}
        runs.write_json(path / ESTIMATOR_FILE, {"class": type(self).__name__, "params": _json_params(self),
                                                "parts": ["m1", "m2"], "fitted": fitted})
        return path


def _num_rows(X: Any) -> int:
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


ESTIMATORS = {"VAE": VAE, "Autoencoder": Autoencoder, "SemiSupervisedVAE": SemiSupervisedVAE}


def load(path: str | Path, device: str = "auto") -> _LatentEstimator | OutlierDetector:
    """A fitted estimator from a run folder: one saved by ``save`` (its class and parameters back) or one
    written by ``vaekit train`` (a ``VAE`` or ``Autoencoder`` with its config's settings). Never unpickles."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    info_path = folder / ESTIMATOR_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    if info is not None and "parts" in info:  # M1+M2: two run folders
        estimator = ESTIMATORS[info["class"]](**_params_from_json(info["params"]))
        m1, m2 = (load(folder / part, device) for part in info["parts"])
        # a folder saved before M2 modelled only M1's used dims has no m1_dims_: M2 read all of them
        estimator._set_parts(m1, m2, info["fitted"].get("m1_dims_", np.arange(m1.latent_dim_)))
        estimator.classes_ = np.asarray(info["fitted"]["classes_"])
        return estimator
    model, cfg, standardizer, train_scores = runs.load_fitted(path, pick_device(device))
    if info is not None:
        cls = ESTIMATORS.get(info.get("class"))
        if cls is None:
            raise VaekitError(f"{info_path}: unknown estimator class {info.get('class')!r}")
        estimator = cls(**_params_from_json(info["params"]))
        fitted = info["fitted"]
    else:
        cls = {c._model_kind: c for c in ESTIMATORS.values()}[cfg.model.model]
        # a CLI run: the constructor parameters its config holds under the same names (the model's settings win)
        settings = {**dataclasses.asdict(cfg.train), **dataclasses.asdict(cfg.model)}
        estimator = cls(random_state=cfg.train.seed, **{name: tuple(v) if isinstance(v, list) else v
                                                        for name, v in settings.items()
                                                        if name in cls._get_param_names() and name != "model"})
        shape = tuple(cfg.model.input_shape)
        fitted = {"n_features_in_": int(np.prod(shape)), "input_shape_": list(shape),
                  "input_layout_": "table" if len(shape) == 1 else "NCHW"}
    history = runs.read_metrics(folder) if (folder / runs.METRICS_FILE).is_file() else []
    estimator._set_fitted(model, cfg, standardizer, history, train_scores)
    estimator.n_features_in_ = fitted["n_features_in_"]
    estimator.input_shape_ = tuple(fitted["input_shape_"])
    estimator.input_layout_ = fitted["input_layout_"]
    if "feature_names_in_" in fitted:
        estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    if "classes_" in fitted:
        estimator.classes_ = np.asarray(fitted["classes_"])
    if info is not None and "detector" in info:
        detector = OutlierDetector(**_params_from_json(info["detector"]["params"]))
        detector._set_fitted(estimator, np.asarray(info["detector"]["decision_scores_"], dtype=np.float64))
        detector.threshold_ = float(info["detector"]["threshold_"])
        detector.labels_ = (detector.decision_scores_ > detector.threshold_).astype(int)
        return detector
    return estimator
