"""Model registry: adding a model is one module and one entry here."""
from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..errors import VaekitError
from .likelihoods import LIKELIHOODS
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
    if cfg.prior != "normal" and not MODELS[cfg.model].learned_prior:
        raise VaekitError(f"--prior {cfg.prior} needs a model with a prior: --model "
                          f"{' or '.join(n for n, m in MODELS.items() if m.learned_prior)} (an autoencoder has none)")
    if cfg.hierarchy and not MODELS[cfg.model].layered:
        raise VaekitError(f"--hierarchy needs --model {' or '.join(n for n, m in MODELS.items() if m.layered)} "
                          f"(the {cfg.model} model has one stochastic layer)")
    model = MODELS[cfg.model](cfg)
    if cfg.weight_norm:
        apply_weight_norm(model)
    return model


def apply_weight_norm(model: nn.Module) -> None:
    """Weight normalisation (Salimans & Kingma 2016, eq. 2) of every dense and conv layer: weight = g v / ||v||,
    with v the direction and g (one per output unit) its length, both learned; g starts at ||v|| so the layer
    computes what it did. A prior's own parameters (pseudo-inputs, mixture means) are not layers and stay as
    they are. The parametrisation is part of the state dict (g as ``parametrizations.weight.original0``, v as
    ``original1``), so a saved model loads into a model built from the same config."""
    from torch.nn.utils.parametrizations import weight_norm

    for module in list(model.modules()):
        if isinstance(module, nn.ConvTranspose2d):  # weight (C_in, C_out, k, k): an output unit is dim 1
            weight_norm(module, dim=1)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):  # weight (C_out, ...)
            weight_norm(module, dim=0)


__all__ = ["MODELS", "build_model", "VAE", "AE", "M2"]
