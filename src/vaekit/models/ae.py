"""The plain (deterministic) autoencoder: z = f(x), x_hat = g(z); a denoising AE is this with corrupted input."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import LatentModel


class AE(LatentModel):
    """Encoder -> code z (B, L) -> decoder -> likelihood parameters. Loss = -log p(target | z); no KL."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, code_dim=cfg.latent_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
             target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruction negative log-likelihood per sample (B,); ``kl`` is zero so terms match the VAE's."""
        recon = self.recon_nll(self.embed(x), x if target is None else target)
        return {"loss": recon, "recon": recon, "kl": torch.zeros_like(recon)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
