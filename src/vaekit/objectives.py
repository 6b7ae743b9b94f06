"""Schedules (learning rate, KL weight), the IWAE bound and the importance-sampled log-likelihood. Pure tensor
code: no files. Each model's training objective is its own method (``LatentModel.objective``, ``VAE.objective``).

- ELBO with a KL weight (beta-VAE, Higgins et al. 2017; KL warm-up, Bowman et al. 2016 / Sonderby et al.
  2016) and free bits (Kingma et al. 2016, sec. C.8).
- IWAE bound (Burda et al. 2016): log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x).
- log p(x) estimated by importance sampling with q(z|x) as proposal: the IWAE bound at large K. The log-weights
  are the model's (``VAE.log_weight_terms``: every stochastic layer, the model's own prior).
"""
from __future__ import annotations

import math

import torch

from .config import TrainConfig

LOG_2PI = math.log(2 * math.pi)


def lr_factor(cfg: TrainConfig, progress_epochs: float, last_epoch: float | None = None) -> float:
    """Multiplier of the base learning rate at a point of training (epochs since the start, fractional).

    cosine: linear warm-up over ``warmup_epochs``, then half a cosine down to 0 at the end of ``last_epoch``
    (None: ``cfg.epochs``; under --max-minutes, the epoch the budget is expected to end with before that, and the
    warm-up then takes at most half of it) (Loshchilov & Hutter 2017, without restarts).
    """
    if cfg.lr_schedule == "constant":
        return 1.0
    warmup = cfg.warmup_epochs if last_epoch is None else min(cfg.warmup_epochs, last_epoch / 2)
    if progress_epochs < warmup:
        return (progress_epochs + 1e-3) / warmup
    span = max((cfg.epochs if last_epoch is None else last_epoch) - warmup, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress_epochs - warmup) / span)))


def kl_weight(cfg: TrainConfig, progress_epochs: float) -> float:
    """beta, ramped linearly from 0 over the first ``kl_warmup`` epochs (``progress_epochs`` counts from 0)."""
    if cfg.kl_warmup and cfg.kl_warmup > 0:
        return cfg.beta * min(1.0, progress_epochs / cfg.kl_warmup)
    return cfg.beta


def log_weights(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                target: torch.Tensor | None = None) -> torch.Tensor:
    """log p(target, z_k) - log q(z_k|x) for k draws z_k from the model's whole inference network: (K, B), fp32.
    The model knows its own latent structure (``VAE.log_weight_terms``)."""
    return model.log_weights(x, k, generator, target)


def iwae_bound(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
               target: torch.Tensor | None = None) -> torch.Tensor:
    """The IWAE lower bound on log p(x) per item (Burda et al. 2016, eq. 8): (B,)."""
    return torch.logsumexp(log_weights(model, x, k, generator, target), dim=0) - math.log(k)


@torch.no_grad()
def importance_sampled_nll(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                           chunk: int = 1000) -> torch.Tensor:
    """-log p(x) per item by importance sampling with q(z|x), K = ``k`` draws in chunks: (B,) float64.

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x) (Burda et al. 2016, sec. 5; Rezende et al. 2014).
    """
    total = None
    for start in range(0, k, chunk):
        lw = log_weights(model, x, min(chunk, k - start), generator).double()  # (k_chunk, B)
        part = torch.logsumexp(lw, dim=0)
        total = part if total is None else torch.logaddexp(total, part)
    return -(total - math.log(k))
