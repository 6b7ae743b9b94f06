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


class Schedule:
    """Where training stands in its planned run: the learning rate's multiplier and how far through its decay it is.

    cosine: linear warm-up over ``warmup_epochs``, then half a cosine down to 0 at the planned end (Loshchilov &
    Hutter 2017, without restarts); constant: 1 throughout. The end is ``cfg.epochs``, or under --max-minutes the
    epoch the budget is expected to end with before that (``replan``; the warm-up then takes at most half of it).
    A re-plan keeps the decay's fraction done where it is and spreads what is left over the epochs to the new end.
    Recomputing it as (epochs - warm-up) / (end - warm-up) jumped whenever the end moved: at --iw-from's switch,
    where the epochs grew 2.5x slower, the planned end fell from ~686 to ~470 epochs and the lr from 6.9e-4 to
    2.5e-4 within three epochs (2026-12-04 (t)). With the end fixed the two are the same.
    ``scale`` multiplies the whole schedule: each --on-spike rollback halves it.
    """

    def __init__(self, cfg: TrainConfig, end: float | None = None, anchor: tuple[float, float] | None = None,
                 scale: float = 1.0):
        self.cfg = cfg
        self.end = end  # None: cfg.epochs
        self.anchor = anchor  # (epochs, the decay's fraction done there) at the last re-plan after the warm-up
        self.scale = scale

    def warmup(self) -> float:
        if self.cfg.lr_schedule == "constant":
            return 0.0
        return self.cfg.warmup_epochs if self.end is None else min(self.cfg.warmup_epochs, self.end / 2)

    def fraction(self, epochs: float) -> float:
        """How far through the decay after the warm-up training is at ``epochs`` (fractional), in [0, 1]."""
        warmup, end = self.warmup(), self.cfg.epochs if self.end is None else self.end
        start, done = self.anchor if self.anchor is not None and self.anchor[0] >= warmup else (warmup, 0.0)
        return min(1.0, max(0.0, done + (1 - done) * (epochs - start) / max(end - start, 1e-9)))

    def replan(self, epochs_done: float, end: float | None) -> None:
        """The run is now expected to end with epoch ``end`` (None: cfg.epochs), ``epochs_done`` epochs in."""
        if end != self.end and epochs_done > self.warmup():  # (an unmoved end keeps the plain formula's floats)
            self.anchor = (epochs_done, self.fraction(epochs_done))
        self.end = end

    def lr_factor(self, epochs: float) -> float:
        """Multiplier of the base learning rate at ``epochs`` since the start (fractional)."""
        if self.cfg.lr_schedule == "constant":
            return self.scale
        warmup = self.warmup()
        if epochs < warmup:
            return self.scale * (epochs + 1e-3) / warmup
        return self.scale * 0.5 * (1 + math.cos(math.pi * self.fraction(epochs)))


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
