"""The MLP variational autoencoder of Kingma & Welling (2014), as in the PyTorch and Keras examples.

Pure: no files, no printing. ``loss(x)`` returns named per-sample terms.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .likelihoods import LIKELIHOODS

LOGVAR_RANGE = (-30.0, 20.0)  # exp() of the log-variance stays finite in fp32 and bf16


def mlp(sizes: list[int]) -> nn.Sequential:
    """Dense layers with a ReLU after each: sizes [a, b, c] -> Linear(a, b), ReLU, Linear(b, c), ReLU."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims; (B, L) -> (B,).

    Kingma & Welling (2014), appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class VAE(nn.Module):
    """Encoder -> (mu, logvar); z = mu + sigma * eps; decoder -> likelihood parameters."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        dim = math.prod(self.input_shape)
        hidden = list(cfg.hidden)
        self.encoder = mlp([dim, *hidden])
        self.to_stats = nn.Linear(hidden[-1], 2 * cfg.latent_dim)
        self.decoder = nn.Sequential(mlp([cfg.latent_dim, *hidden[::-1]]), nn.Linear(hidden[0], dim))
        self.likelihood = LIKELIHOODS[cfg.likelihood]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *input_shape) -> mean and log-variance of q(z|x), each (B, L)."""
        h = self.encoder(x.flatten(1))  # (B, H)
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)  # (B, L) each
        return mu, logvar.clamp(*LOGVAR_RANGE)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10); (B, L)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> likelihood parameters (B, D), e.g. Bernoulli logits."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> expected x, shaped like the data (B, *input_shape)."""
        return self.likelihood.mean(self.decode(z).float()).view(-1, *self.input_shape)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative ELBO per sample and its terms, each (B,), accumulated in fp32.

        loss = -E_q[log p(x|z)] + KL(q(z|x) || p(z)), one sample of z (Kingma & Welling 2014, eq. 10).
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        params = self.decode(z).float()  # (B, D)
        recon = -self.likelihood.log_prob(params, x.flatten(1).float())
        kl = gaussian_kl(mu.float(), logvar.float())
        return {"loss": recon + kl, "recon": recon, "kl": kl}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
