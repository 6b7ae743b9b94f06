"""What every autoencoder shares: a decoder to likelihood parameters, and the likelihood itself."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .likelihoods import LIKELIHOODS


def mlp(sizes: list[int]) -> nn.Sequential:
    """Dense layers with a ReLU after each: sizes [a, b, c] -> Linear(a, b), ReLU, Linear(b, c), ReLU."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


class LatentModel(nn.Module):
    """Encoder to ``code_dim`` outputs (an MLP over the flattened input), decoder mirroring it."""

    def __init__(self, cfg: ModelConfig, code_dim: int):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        dim = math.prod(self.input_shape)
        hidden = list(cfg.hidden)
        self.encoder = nn.Sequential(mlp([dim, *hidden]), nn.Linear(hidden[-1], code_dim))
        self.decoder = nn.Sequential(mlp([cfg.latent_dim, *hidden[::-1]]), nn.Linear(hidden[0], dim))
        self.likelihood = LIKELIHOODS[cfg.likelihood]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> likelihood parameters (B, D), e.g. Bernoulli logits."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> expected x, shaped like the data (B, *input_shape)."""
        return self.likelihood.mean(self.decode(z).float()).view(-1, *self.input_shape)

    def recon_nll(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(target | z) summed over dimensions, in fp32: (B, L), (B, ...) -> (B,)."""
        return -self.likelihood.log_prob(self.decode(z).float(), target.flatten(1).float())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A deterministic code for each item: (B, ...) -> (B, L)."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Expected reconstruction from the deterministic code: (B, ...) -> (B, *input_shape)."""
        return self.decode_mean(self.embed(x))
