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
REFINE_DRAWS = 16  # draws a step of ``refine_proposal``'s bound


def draw_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype q's draws and shifts are made in: fp32 (fp64 stays fp64) under bf16 autocast, whose 8-bit
    mantissa would round the noise and the log-densities of the draws."""
    return torch.promote_types(dtype, torch.float32)


def cosine_factor(fraction: float) -> float:
    """The cosine decay's multiplier of the peak lr, fraction done in [0, 1] -> 1 .. 0 (Loshchilov & Hutter 2017)."""
    return 0.5 * (1 + math.cos(math.pi * fraction))


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
        return self.scale * cosine_factor(self.fraction(epochs))


def kl_weight(cfg: TrainConfig, progress_epochs: float) -> float:
    """beta, ramped linearly from 0 over the first ``kl_warmup`` epochs (``progress_epochs`` counts from 0)."""
    if cfg.kl_warmup and cfg.kl_warmup > 0:
        return cfg.beta * min(1.0, progress_epochs / cfg.kl_warmup)
    return cfg.beta


def log_weights(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                target: torch.Tensor | None = None, shifts: list | None = None) -> torch.Tensor:
    """log p(target, z_k) - log q(z_k|x) for k draws z_k from the model's whole inference network: (K, B), fp32.
    The model knows its own latent structure (``VAE.log_weight_terms``); ``shifts`` move q per item
    (``refine_proposal``)."""
    return model.log_weights(x, k, generator, target, shifts=shifts)


def iwae_bound(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
               target: torch.Tensor | None = None, shifts: list | None = None) -> torch.Tensor:
    """The IWAE lower bound on log p(x) per item (Burda et al. 2016, eq. 8): (B,)."""
    return torch.logsumexp(log_weights(model, x, k, generator, target, shifts), dim=0) - math.log(k)


def refine_proposal(model, x: torch.Tensor, steps: int, k: int = REFINE_DRAWS, lr: float = 0.01, check_k: int = 64,
                    generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-item shifts of every stochastic layer's q mean and log-variance, top first, each (B, d) fp32, that raise
    the IWAE bound with ``k`` draws: ``steps`` Adam steps on the shifts alone, from zero; the model is unchanged.

    Why: an amortised q(z|x) is fitted to the training items on average, not to each test item (the amortisation
    gap, Cremer et al. 2018, "Inference Suboptimality in Variational Autoencoders"), and the importance-sampled
    log p(x) converges slowly in K from a poor proposal. Any proposal fixed before the importance draws gives an
    unbiased estimate of p(x), so the moved q tightens the estimate without changing what it estimates. A shift is
    kept only for the items whose bound with ``check_k`` fresh draws it raises (else zero: q as trained, though
    drawn in fp32 where bf16 autocast draws q's lower layers in bf16); the choice uses none of the estimate's own
    draws, which come after these from the generator.
    """
    dtype = draw_dtype(x.dtype)
    params = [torch.zeros(len(x), size, device=x.device, dtype=dtype, requires_grad=True)
              for size in model.layer_sizes for _ in range(2)]

    def shifts() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(params[0::2], params[1::2]))

    optimiser = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            # items are independent: the sum's gradient for each item's shifts is that item's own
            loss = -iwae_bound(model, x, k, generator, shifts=shifts()).sum()
            for param, grad in zip(params, torch.autograd.grad(loss, params)):
                param.grad = grad
            optimiser.step()
    with torch.no_grad():
        moved = iwae_bound(model, x, check_k, generator, shifts=shifts())  # (B,)
        better = (torch.isfinite(moved) & (moved > iwae_bound(model, x, check_k, generator)))[:, None]  # (B, 1)
        return [(torch.where(better, d_mu, 0.0), torch.where(better, d_logvar, 0.0)) for d_mu, d_logvar in shifts()]


@torch.no_grad()
def importance_sampled_nll(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                           chunk: int = 1000, shifts: list | None = None) -> torch.Tensor:
    """-log p(x) per item by importance sampling with q(z|x) (moved per item by ``shifts``, ``refine_proposal``),
    K = ``k`` draws in chunks: (B,) float64.

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x) (Burda et al. 2016, sec. 5; Rezende et al. 2014).
    """
    total = None
    for start in range(0, k, chunk):
        lw = log_weights(model, x, min(chunk, k - start), generator, shifts=shifts).double()  # (k_chunk, B)
        part = torch.logsumexp(lw, dim=0)
        total = part if total is None else torch.logaddexp(total, part)
    return -(total - math.log(k))
