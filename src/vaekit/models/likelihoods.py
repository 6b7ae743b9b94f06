"""Observation models p(x|z): the decoder outputs their parameters (B, D), these give log-probabilities.

Modules, so that a likelihood with a learned variance owns its parameter and saves with the model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_SIGMA_MIN = -6.0  # a learned sigma never collapses below e^-6 (log-likelihoods stay bounded)


class Bernoulli(nn.Module):
    """Values in [0, 1] as Bernoulli probabilities; the decoder outputs logits."""

    name = "bernoulli"

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Sum over dimensions of log p(x|z): logits (..., D), x broadcastable to them -> (...).

        log p = x l - log(1 + e^l) = x l - softplus(l), stable for any logit. ``x`` (B, D) broadcasts over
        the samples of (K, B, D) logits, so importance sampling never makes K copies of the data.
        """
        return (params * x).sum(-1) - F.softplus(params).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class Gaussian(nn.Module):
    """Real values as N(mean, sigma^2); the decoder outputs the mean.

    sigma is fixed, or one value learned for all dimensions (the sigma-VAE of Rybkin et al. 2021).
    """

    def __init__(self, sigma: float = 1.0, learned: bool = False):
        super().__init__()
        self.name = "gaussian-learned" if learned else "gaussian"
        log_sigma = torch.tensor(math.log(sigma))
        if learned:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log N(x; m, s^2) = -0.5 ((x - m) / s)^2 - log s - 0.5 log(2 pi), summed over D: (..., D) -> (...),
        # x broadcast like Bernoulli's
        log_sigma = self.log_sigma.float()
        if isinstance(self.log_sigma, nn.Parameter):
            log_sigma = log_sigma.clamp(min=LOG_SIGMA_MIN)
        z = (x - params) * torch.exp(-log_sigma)
        return -0.5 * z.pow(2).sum(-1) - x.shape[-1] * (log_sigma + 0.5 * math.log(2 * math.pi))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params


LIKELIHOODS = {
    "bernoulli": lambda cfg: Bernoulli(),
    "gaussian": lambda cfg: Gaussian(cfg.gaussian_sigma),
    "gaussian-learned": lambda cfg: Gaussian(cfg.gaussian_sigma, learned=True),
}
