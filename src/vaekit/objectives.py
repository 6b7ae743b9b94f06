"""Schedules (learning rate, KL weight), the IWAE bound and the importance-sampled log-likelihood. Pure tensor
code: no files. Each model's training objective is its own method (``LatentModel.objective``, ``VAE.objective``).

- ELBO with a KL weight (beta-VAE, Higgins et al. 2017; KL warm-up, Bowman et al. 2016 / Sonderby et al.
  2016) and free bits (Kingma et al. 2016, sec. C.8).
- IWAE bound (Burda et al. 2016): log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x).
- log p(x) estimated by importance sampling with q(z|x) as proposal: the IWAE bound at large K.
"""
from __future__ import annotations

import math

import torch

from .config import TrainConfig

LOG_2PI = math.log(2 * math.pi)


def lr_factor(cfg: TrainConfig, progress_epochs: float) -> float:
    """Multiplier of the base learning rate at a point of training (epochs since the start, fractional).

    cosine: linear warm-up over ``warmup_epochs``, then half a cosine down to 0 at the last step
    (Loshchilov & Hutter 2017, without restarts).
    """
    if cfg.lr_schedule == "constant":
        return 1.0
    if progress_epochs < cfg.warmup_epochs:
        return (progress_epochs + 1e-3) / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress_epochs - cfg.warmup_epochs) / span)))


def kl_weight(cfg: TrainConfig, progress_epochs: float) -> float:
    """beta, ramped linearly from 0 over the first ``kl_warmup`` epochs (``progress_epochs`` counts from 0)."""
    if cfg.kl_warmup and cfg.kl_warmup > 0:
        return cfg.beta * min(1.0, progress_epochs / cfg.kl_warmup)
    return cfg.beta


def log_weight_terms(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The importance log-weights ``log_w`` = log p(target, z_k) - log q(z_k|x) for k draws z_k ~ q(z|x) and
    their parts ``log_px`` = log p(target|z_k), ``log_pz``, ``log_q``, each (K, B) in fp32; q's ``mu``,
    ``logvar`` (B, L). Any model with a Gaussian ``encode`` and a ``recon_nll`` (the VAE; exact test models)."""
    target = x if target is None else target
    mu, logvar = model.encode(x)  # (B, L) each
    mu, logvar = mu.float(), logvar.float()
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device)  # (K, B, L)
    z = mu + std * eps
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)  # (K, B)
    log_pz = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)  # (K, B)
    log_px = -model.recon_nll(z, target)  # (K, B); the target broadcasts over the K samples
    return {"log_w": log_px + log_pz - log_q, "log_px": log_px, "log_pz": log_pz, "log_q": log_q, "mu": mu,
            "logvar": logvar}


def log_weights(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                target: torch.Tensor | None = None) -> torch.Tensor:
    """log p(target, z_k) - log q(z_k|x) for k draws z_k ~ q(z|x): (K, B), in fp32."""
    return log_weight_terms(model, x, k, generator, target)["log_w"]


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
