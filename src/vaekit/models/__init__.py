"""Model registry: adding a model is one module and one entry here."""
from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..errors import VaekitError
from .likelihoods import LIKELIHOODS, UNIT_INTERVAL
from .ae import AE
from .m2 import M2
from .vae import VAE

MODELS: dict[str, type[nn.Module]] = {"vae": VAE, "ae": AE, "m2": M2}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the model a (fully resolved) config names."""
    if cfg.model not in MODELS:
        raise VaekitError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    if cfg.likelihood not in LIKELIHOODS:
        raise VaekitError(f"unknown likelihood {cfg.likelihood!r}; choose from {', '.join(LIKELIHOODS)}")
    if cfg.latent_dim < 1:
        raise VaekitError(f"latent dim must be at least 1, got {cfg.latent_dim}")
    if not cfg.hidden or any(h < 1 for h in cfg.hidden):
        raise VaekitError(f"hidden sizes must be positive integers, got {list(cfg.hidden)}")
    if cfg.prior_components < 1:
        raise VaekitError(f"--prior-components must be at least 1, got {cfg.prior_components}")
    if any(size < 1 for size in cfg.hierarchy):
        raise VaekitError(f"--hierarchy sizes must be positive integers, got {list(cfg.hierarchy)}")
    if cfg.autoregressive_hidden < 0:
        raise VaekitError(f"--autoregressive-hidden must be >= 0, got {cfg.autoregressive_hidden}")
    if cfg.autoregressive_hidden and cfg.likelihood != "bernoulli-autoregressive":
        raise VaekitError(f"--autoregressive-hidden is the masked layer of --likelihood bernoulli-autoregressive; "
                          f"the {cfg.likelihood} likelihood has none")
    if cfg.autoregressive_window < 0:
        raise VaekitError(f"--autoregressive-window must be >= 0, got {cfg.autoregressive_window}")
    if cfg.autoregressive_window and cfg.likelihood != "bernoulli-autoregressive":
        raise VaekitError(f"--autoregressive-window is the masked layer's reach under --likelihood "
                          f"bernoulli-autoregressive; the {cfg.likelihood} likelihood has none")
    if cfg.autoregressive_window and len(cfg.input_shape) < 2:
        raise VaekitError(f"--autoregressive-window counts image rows; the data are vectors of "
                          f"{cfg.input_shape[0] if cfg.input_shape else 0} values, not images")
    if cfg.autoregressive_order != "rows" and (cfg.likelihood != "bernoulli-autoregressive"
                                               or len(cfg.input_shape) < 2):
        raise VaekitError(f"--autoregressive-order {cfg.autoregressive_order} orders the values of an image under "
                          f"--likelihood bernoulli-autoregressive; here the likelihood is {cfg.likelihood} on items "
                          f"of shape {tuple(cfg.input_shape)}")
    if cfg.autoregressive_units < 0:
        raise VaekitError(f"--autoregressive-units must be >= 0, got {cfg.autoregressive_units}")
    if cfg.autoregressive_units and not cfg.autoregressive_window:
        raise VaekitError("--autoregressive-units read the values within --autoregressive-window rows through a "
                          "convolution; give a window of 1 or more")
    if cfg.prior != "normal" and not MODELS[cfg.model].learned_prior:
        raise VaekitError(f"--prior {cfg.prior} needs a model with a prior: --model "
                          f"{' or '.join(n for n, m in MODELS.items() if m.learned_prior)} (an autoencoder has none)")
    if cfg.hierarchy and not MODELS[cfg.model].layered:
        raise VaekitError(f"--hierarchy needs --model {' or '.join(n for n, m in MODELS.items() if m.layered)} "
                          f"(the {cfg.model} model has one stochastic layer)")
    return MODELS[cfg.model](cfg)


__all__ = ["MODELS", "UNIT_INTERVAL", "build_model", "VAE", "AE", "M2"]
