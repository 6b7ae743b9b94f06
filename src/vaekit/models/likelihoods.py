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
    # True where the mean is computed one value at a time (a loop a graph exporter would unroll D times)
    sequential_mean = False

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Sum over dimensions of log p(x|z): logits (..., D), x broadcastable to them -> (...).

        log p = x l - log(1 + e^l) = x l - softplus(l), stable for any logit. ``x`` (B, D) broadcasts over
        the samples of (K, B, D) logits, so importance sampling never makes K copies of the data.
        """
        return (params * x).sum(-1) - F.softplus(params).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class AutoregressiveBernoulli(Bernoulli):
    """Bernoulli values, each conditioned on the code and on the values before it: p(x | z) = prod_i p(x_i | z,
    x_<i), x flattened in raster (C, H, W) order, with

        logit_i = l_i(z) + sum_{j<i} W_ij x_j + sum_k V_ik relu(sum_{j<d_k} U_kj x_j + c_k),   V_ik = 0 unless d_k <= i.

    With ``window`` R > 0, W_ij = 0 also where x_j lies more than R image rows above x_i (a local receptive field).

    The decoder gives l(z), the global shape; the rest, owned here and saved with the model, adds what independent
    pixels cannot: each value's dependence on the ones before it. W (strictly lower-triangular) is a fully visible
    sigmoid belief net (Frey 1998); ``hidden`` > 0 adds H hidden units, unit k reading the first d_k values (MADE's
    masks, Germain et al. 2015, in raster order). The autoregressive decoders of PixelVAE (Gulrajani et al. 2017) and
    of Tomczak & Welling's (2018) PixelHVAE do this with masked convolutions; masked dense layers cost a few matmuls
    a batch whatever the number of samples of z, so training and the importance-sampled NLL stay parallel. Only
    drawing pictures is sequential (``mean``).
    """

    name = "bernoulli-autoregressive"
    sequential_mean = True

    def __init__(self, dim: int, hidden: int = 0, window: int = 0, row_width: int = 0):
        super().__init__()
        # W (D, D), W[i, j] the weight of x_j in x_i's logit, only j < i used (``linear``); V starts at 0 too, so
        # the model begins as the plain Bernoulli one
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.hidden = hidden
        # M (D, D): 1 where x_i reads x_j, only j < i. With a window, also only from x_i's own row (left of it)
        # and the ``window`` rows above, rows of ``row_width`` values in raster order (PixelCNN's receptive field,
        # with a weight per position): fewer weights to overfit static MNIST, 28 x 28 with window 2 keeping ~70
        # of the up to 783 per pixel
        reads = torch.ones(dim, dim).tril(diagonal=-1).bool()
        if window:
            row = torch.arange(dim) // row_width  # (D,)
            reads &= row[None, :] >= row[:, None] - window
        self.register_buffer("linear_mask", reads.float(), persistent=False)
        if hidden:
            # d_k in 1 .. D-1, spread evenly: unit k reads x_0 .. x_{d_k - 1} and feeds x_{d_k} .. x_{D-1}
            degrees = 1 + torch.arange(hidden) * (dim - 1) // hidden  # (H,)
            positions = torch.arange(dim)  # (D,)
            self.register_buffer("in_mask", (positions[None, :] < degrees[:, None]).float(), persistent=False)
            self.register_buffer("out_mask", (degrees[None, :] <= positions[:, None]).float(), persistent=False)
            self.hidden_in = nn.Linear(dim, hidden)  # U (H, D), c (H,)
            self.hidden_out = nn.Parameter(torch.zeros(dim, hidden))  # V (D, H)

    def linear(self) -> torch.Tensor:
        """W with everything on and above the diagonal (and, with a window, outside it) zeroed: (D, D)."""
        return self.weight * self.linear_mask

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """What the values before each one add to its logit: x (N, D) -> (N, D), fp32."""
        out = x @ self.linear().t().to(x.dtype)
        if self.hidden:
            h = F.relu(F.linear(x, self.hidden_in.weight * self.in_mask, self.hidden_in.bias))  # (N, H)
            out = out + h @ (self.hidden_out * self.out_mask).t().to(h.dtype)
        return out.float()

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits l(z) (..., B, D) and x (B, D) -> log p(x | z) (..., B): the Bernoulli log-probability of x at
        l(z) + context(x). The context (B, D) is computed once and broadcast over any samples of z."""
        return super().log_prob(params + self.context(x), x)

    @torch.no_grad()
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Pictures: each value's probability given the probabilities before it (the mean-field approximation of
        E[x | z], one value at a time in raster order; the exact mean needs sampling): (..., D) -> (..., D). The
        hidden units' inputs grow by one value a step, so the whole pass costs about one ``context``."""
        flat = params.reshape(-1, params.shape[-1]).float()  # (N, D)
        linear = self.linear().float()
        probs = torch.zeros_like(flat)
        if self.hidden:
            u = (self.hidden_in.weight * self.in_mask).float()  # (H, D)
            v = (self.hidden_out * self.out_mask).float()  # (D, H)
            pre = self.hidden_in.bias.float().expand(flat.shape[0], -1).clone()  # (N, H): no value read yet
        for i in range(flat.shape[-1]):
            logit = flat[:, i] + probs[:, :i] @ linear[i, :i]
            if self.hidden:
                logit = logit + F.relu(pre) @ v[i]
            probs[:, i] = torch.sigmoid(logit)
            if self.hidden:
                pre += probs[:, i, None] * u[:, i]
        return probs.view(params.shape)


class Gaussian(nn.Module):
    """Real values as N(mean, sigma^2); the decoder outputs the mean.

    sigma is fixed, or one value learned for all dimensions (the sigma-VAE of Rybkin et al. 2021).
    """

    sequential_mean = False

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
    "bernoulli-autoregressive": lambda cfg: AutoregressiveBernoulli(math.prod(cfg.input_shape),
                                                                    cfg.autoregressive_hidden,
                                                                    cfg.autoregressive_window, cfg.input_shape[-1]),
    "gaussian": lambda cfg: Gaussian(cfg.gaussian_sigma),
    "gaussian-learned": lambda cfg: Gaussian(cfg.gaussian_sigma, learned=True),
}
# the likelihoods of values in [0, 1] (binary or grey levels): dynamic binarisation, noise that corrupts within
# [0, 1] and the VampPrior's bounded pseudo-inputs apply to these
UNIT_INTERVAL = frozenset({"bernoulli", "bernoulli-autoregressive"})
