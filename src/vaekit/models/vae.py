"""The MLP variational autoencoder of Kingma & Welling (2014), as in the PyTorch and Keras examples.

Pure: no files, no printing. ``loss(x)`` returns named per-sample terms.
"""
from __future__ import annotations

import math

import torch

from ..config import ModelConfig, TrainConfig
from ..objectives import log_weight_terms
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

    variational = True
    importance_sampled = True
    scores = ("mse", "recon", "elbo")

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

    def objective(self, x: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, weight: float | torch.Tensor,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar to minimise, per-item terms to log). The logged ``loss`` is the honest one-sample negative
        ELBO, as in validation, whatever beta (``weight``), warm-up, free bits or the IWAE bound do to the
        objective."""
        if cfg.iw_samples > 1:
            t = log_weight_terms(self, x, cfg.iw_samples, target=target)
            bound = torch.logsumexp(t["log_w"], dim=0) - math.log(cfg.iw_samples)  # (B,), Burda et al. 2016 eq. 8
            # the logged terms are validation's one-sample ELBO, read off the first of the K draws (no second pass)
            kl_dims = gaussian_kl_per_dim(t["mu"], t["logvar"]).detach()  # (B, L)
            recon = -t["log_px"][0].detach()  # (B,)
            kl = kl_dims.sum(-1)
            return -bound.mean(), {"loss": recon + kl, "recon": recon, "kl": kl, "kl_per_dim": kl_dims}
        terms = self.loss(x, target=target)
        kl_dims = terms["kl_per_dim"]  # (B, L)
        if cfg.free_bits > 0:
            # free bits (Kingma et al. 2016, sec. C.8): each latent dim's batch-mean KL counts at least free_bits
            # nats (no gradient below)
            kl = torch.clamp(kl_dims.mean(0), min=cfg.free_bits).sum()
        else:
            kl = kl_dims.sum(-1).mean()
        return terms["recon"].mean() + weight * kl, terms

    def anomaly_score(self, x: torch.Tensor, score: str, samples: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``elbo``: the negative ELBO -E_q[log p(x|z)] + KL(q(z|x) || p(z)), (B,); with ``samples=0`` the
        expectation is taken at the posterior mean, else estimated with that many draws. Others: the base's."""
        if score != "elbo":
            return super().anomaly_score(x, score, samples, generator)
        mu, logvar = self.encode(x)
        if samples:
            recon = torch.stack([self.recon_nll(self.reparameterize(mu, logvar, generator), x)
                                 for _ in range(samples)]).mean(0)
        else:
            recon = self.recon_nll(mu, x)
        return recon + gaussian_kl(mu.float(), logvar.float())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
