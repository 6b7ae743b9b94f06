"""Priors p(z) over a model's code: the standard normal, a learned mixture of Gaussians, and the VampPrior; the
Gaussian densities and KL divergences the models build their bounds from.

Each prior is a module (its learned parts save with the model) with one interface:
  ``components(encode)`` -> the mixture's means (C, L), log-variances (C, L) and log-weights (C,);
  ``log_prob(z, encode)`` -> log p(z) for codes (..., L): (...);
  ``sample(n, encode, generator)`` -> (n, L).
``encode`` is the model's own x -> (mu, logvar) of q(z|x): the VampPrior's components are posteriors of learned
pseudo-inputs (Tomczak & Welling 2018, "VAE with a VampPrior", eq. 9), so the model hands its encoder over on
each call instead of the prior holding the model.
"""
from __future__ import annotations

import math
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..objectives import LOG_2PI
from .likelihoods import UNIT_INTERVAL

Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor | float = 0.0,
                        prior_logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(prior_mu, exp(prior_logvar))) of each dim, elementwise: (..., L) -> (..., L).

    With the standard normal, Kingma & Welling (2014), appendix B: -1/2 * (1 + log sigma^2 - mu^2 - sigma^2);
    in general 1/2 * (log s^2 - log sigma^2 + (sigma^2 + (mu - m)^2) / s^2 - 1).
    """
    if isinstance(prior_mu, float) and prior_mu == 0.0 and isinstance(prior_logvar, float) and prior_logvar == 0.0:
        return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu).pow(2)) * torch.exp(-prior_logvar) - 1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims; (B, L) -> (B,)."""
    return gaussian_kl_per_dim(mu, logvar).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10); mu, logvar (..., L) -> z."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim, in fp32: (..., L) -> (...)."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    return (-0.5 * (z - mu).pow(2) * torch.exp(-logvar) - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)


def mixture_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weight: torch.Tensor
                     ) -> torch.Tensor:
    """log sum_c w_c N(z; mu_c, diag(exp(logvar_c))) for z (..., L), components (C, L), log-weights (C,): (...).

    The squared distances come from matmuls, sum_d (z_d - m_cd)^2 / v_cd = z^2 . (1/v_c) - 2 z . (m_c / v_c)
    + m_c^2 . (1/v_c), so N codes against C components cost (N, L) @ (L, C), never an (N, C, L) tensor: the
    importance-sampled NLL scores 5,000 codes per item against 500 VampPrior components.

    The expansion subtracts terms of size |z|^2 / v to leave one of size |z - m_c|^2 / v, so it runs in fp32 even
    under bf16 autocast, with z and the means centred on the means' average first (the distances are unchanged;
    the terms shrink to the codes' spread). bf16's 8-bit mantissa left errors of ~0.3 nats a code in a trained
    VampPrior HVAE, whose codes reach |z| ~ 30, and let a run learn narrow components where the rounding made
    log p(z) up to ~240 nats too high: its one-sample KL went to -38 nats (bench/README.md, "the prior's
    log-density in bf16", 2026-12-05 (y)).
    """
    shape = z.shape[:-1]
    with torch.autocast(z.device.type, enabled=False):
        mu, logvar = mu.float(), logvar.float()
        centre = mu.detach().mean(0)  # (L,)
        z, mu = z.float().reshape(-1, z.shape[-1]) - centre, mu - centre  # (N, L), (C, L)
        precision = torch.exp(-logvar)  # (C, L)
        quad = (z.pow(2) @ precision.T - 2 * z @ (mu * precision).T
                + (mu.pow(2) * precision).sum(-1))  # (N, C)
        log_n = -0.5 * (quad.clamp(min=0) + logvar.sum(-1) + z.shape[-1] * LOG_2PI)  # (N, C)
        return torch.logsumexp(log_n + log_weight.float(), dim=-1).view(shape)


class Prior(nn.Module):
    """A mixture of diagonal Gaussians over the code (the standard normal: one component at 0 with unit variance)."""

    name: ClassVar[str]
    # KL(q(z|x) || p(z)) in closed form, per latent dim (Kingma & Welling 2014, appendix B): only the standard
    # normal. The others are estimated from the sampled z, log q(z|x) - log p(z) (Tomczak & Welling 2018, eq. 8).
    analytic: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim

    def components(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means (C, L), log-variances (C, L) and log-weights (C,) of the mixture."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        """log p(z): (..., L) -> (...), fp32."""
        return mixture_log_prob(z, *self.components(encode))

    def marginal_moments(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of each latent dim under p(z), (L,) each: the mixture's moments (for scanning a
        dim over its prior spread, and a per-dim KL against the moment-matched Gaussian)."""
        mu, logvar, log_weight = (t.float() for t in self.components(encode))
        w = log_weight.softmax(-1)[:, None]  # (C, 1)
        mean = (w * mu).sum(0)
        return mean, (w * (logvar.exp() + mu.pow(2))).sum(0) - mean.pow(2)

    def sample(self, n: int, encode: Encode, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from p(z): a component per code by its weight, then a draw from it: (n, L)."""
        mu, logvar, log_weight = (t.float() for t in self.components(encode))
        pick = torch.multinomial(log_weight.softmax(-1), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, mu.shape[-1], generator=generator, device=mu.device)
        return mu[pick] + torch.exp(0.5 * logvar[pick]) * eps


class StandardNormal(Prior):
    """p(z) = N(0, I), the VAE's prior since Kingma & Welling (2014)."""

    name = "normal"
    analytic = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        # an empty buffer that moves with .to(device), so the prior knows its device without parameters; not saved
        self.register_buffer("device_probe", torch.zeros(0), persistent=False)

    def components(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = self._device()
        zeros = torch.zeros(1, self.latent_dim, device=device)
        return zeros, zeros, torch.zeros(1, device=device)

    def log_prob(self, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        return (-0.5 * z.float().pow(2) - 0.5 * LOG_2PI).sum(-1)

    def sample(self, n: int, encode: Encode, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=self._device())

    def _device(self) -> torch.device:
        return self.device_probe.device


class GaussianMixture(Prior):
    """p(z) = sum_c pi_c N(mu_c, diag(sigma_c^2)), every part learned with the model (the "MoG" prior of
    Tomczak & Welling 2018, sec. 3). Means start spread as N(0, I) draws, unit variances, equal weights."""

    name = "mog"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        c = cfg.prior_components
        self.means = nn.Parameter(torch.randn(c, cfg.latent_dim, generator=torch.Generator().manual_seed(0)))
        self.logvars = nn.Parameter(torch.zeros(c, cfg.latent_dim))
        self.logits = nn.Parameter(torch.zeros(c))

    def components(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.means, self.logvars.clamp(-10, 10), self.logits.log_softmax(-1)


class VampPrior(Prior):
    """p(z) = (1/C) sum_c q(z | u_c): the model's posterior at C learned pseudo-inputs u_c (Tomczak & Welling
    2018, eq. 9), which couples the prior with the encoder and lets it follow the aggregated posterior.

    As in the paper's code, data in [0, 1] (a Bernoulli likelihood) passes the pseudo-inputs through
    hardtanh(0, 1) and starts them at N(0.05, 0.01^2); real-valued data starts them at N(0, 0.01^2).
    """

    name = "vamp"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.bounded = cfg.likelihood in UNIT_INTERVAL
        start = 0.05 if self.bounded else 0.0
        gen = torch.Generator().manual_seed(0)
        self.pseudo_inputs = nn.Parameter(start + 0.01 * torch.randn(cfg.prior_components, *cfg.input_shape,
                                                                     generator=gen))

    def inputs(self) -> torch.Tensor:
        """The pseudo-inputs as items the encoder reads: (C, *input_shape)."""
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0) if self.bounded else self.pseudo_inputs

    def components(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = encode(self.inputs())  # (C, L) each
        c = len(mu)
        return mu, logvar, torch.full((c,), -math.log(c), device=mu.device)


class WithPrior:
    """What a model derives from its prior: mixed into the models that have one (``self.prior``) and a Gaussian
    posterior of the code (``self.encode``: x -> mu, logvar), the VAE and M2."""

    prior: Prior

    def weight_matrices(self) -> list[nn.Parameter]:
        """The networks' weight matrices (``LatentModel.weight_matrices``) less the prior's parameters: the
        VampPrior's pseudo-inputs are points in data space and a mixture's are its components, not weights, and
        a decay would pull them towards 0 (a black image; components at the origin with unit variances)."""
        prior = {id(p) for p in self.prior.parameters()}
        return [p for p in super().weight_matrices() if id(p) not in prior]  # type: ignore[misc]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes (..., L) under the model's prior: (...), fp32."""
        return self.prior.log_prob(z, self.encode)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from the model's prior p(z): (n, L)."""
        return self.prior.sample(n, self.encode, generator)

    def code_kl(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) of the code: (B, L) per dim in closed form under N(0, I) (Kingma & Welling 2014,
        appendix B); else (B, 1), the one-sample estimate log q(z|x) - log p(z) at the drawn z (B, L) (Tomczak &
        Welling 2018, eq. 8)."""
        if self.prior.analytic:
            return gaussian_kl_per_dim(mu.float(), logvar.float())
        return (gaussian_log_density(z, mu, logvar) - self.log_prior(z))[:, None]

    def code_spread(self, codes: torch.Tensor) -> torch.Tensor:
        """The prior's standard deviation of each dim (1 for N(0, I)): pictures scan the prior's spread."""
        if self.prior.analytic:
            return torch.ones(codes.shape[-1])
        return self.prior.marginal_moments(self.encode)[1].detach().clamp(min=1e-12).sqrt().cpu()

    @torch.no_grad()
    def kl_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """How much each dim of the code is used, summed over the items x (B, ...): (L,) nats. With N(0, I) the
        exact KL(q(z_j|x) || p(z_j)); with a learned prior, the KL against the Gaussian with the prior's mean and
        variance in that dim (a mixture's marginal has no closed-form KL)."""
        mu, logvar = (t.float() for t in self.encode(x))
        if self.prior.analytic:
            return gaussian_kl_per_dim(mu, logvar).sum(0)
        mean, var = self.prior.marginal_moments(self.encode)
        return gaussian_kl_per_dim(mu, logvar, mean, var.clamp(min=1e-12).log()).sum(0)


PRIORS: dict[str, type[Prior]] = {p.name: p for p in (StandardNormal, GaussianMixture, VampPrior)}


def build_prior(cfg: ModelConfig) -> Prior:
    """The prior the config names (``--prior``)."""
    return PRIORS[cfg.prior](cfg)
