"""Observation models p(x|z): the decoder outputs their parameters, these turn them into log-probabilities."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Bernoulli:
    """Pixels in [0, 1] as Bernoulli probabilities; the decoder outputs logits (B, D)."""

    name = "bernoulli"

    @staticmethod
    def log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Sum over dimensions of log p(x|z); (B, D), (B, D) -> (B,). Stable on logits."""
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    @staticmethod
    def in_support(x: torch.Tensor) -> bool:
        return bool(((x >= 0) & (x <= 1)).all())


class UnitGaussian:
    """Real-valued features (e.g. standardised CSV columns) as N(mean, 1); the decoder outputs the mean."""

    name = "gaussian"

    @staticmethod
    def log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log N(x; m, 1) = -0.5 (x - m)^2 - 0.5 log(2 pi), summed over D: (B, D) -> (B,)
        return -0.5 * ((x - params) ** 2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        return params

    @staticmethod
    def in_support(x: torch.Tensor) -> bool:
        return bool(torch.isfinite(x).all())


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": UnitGaussian}
