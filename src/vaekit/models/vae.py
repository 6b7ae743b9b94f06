"""The MLP variational autoencoder of Kingma & Welling (2014), as in the PyTorch and Keras examples.

Pure: no files, no printing. ``loss(x)`` returns named per-sample terms.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import LatentModel

LOGVAR_RANGE = (-30.0, 20.0)  # exp() of the log-variance stays finite in fp32 and bf16


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dim; (B, L) -> (B, L).

    Kingma & Welling (2014), appendix B: -1/2 * (1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims; (B, L) -> (B,)."""
    return gaussian_kl_per_dim(mu, logvar).sum(-1)


class VAE(LatentModel):
    """Encoder -> (mu, logvar); z = mu + sigma * eps; decoder -> likelihood parameters."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, code_dim=2 * cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *input_shape) -> mean and log-variance of q(z|x), each (B, L)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, L) each
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def encoder_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        return {"mean": mu, "logvar": logvar}  # (B, L) each

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10); (B, L)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
             target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Negative ELBO per sample and its terms, each (B,), accumulated in fp32.

        loss = -E_q[log p(target|z)] + KL(q(z|x) || p(z)), one sample of z (Kingma & Welling 2014, eq. 10).
        ``target`` defaults to ``x``; a denoising model passes the clean items as target.
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        recon = self.recon_nll(z, x if target is None else target)
        kl_dims = gaussian_kl_per_dim(mu.float(), logvar.float())  # (B, L)
        kl = kl_dims.sum(-1)
        return {"loss": recon + kl, "recon": recon, "kl": kl, "kl_per_dim": kl_dims}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
