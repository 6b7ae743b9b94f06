"""The plain (deterministic) autoencoder: z = f(x), x_hat = g(z); a denoising AE is this with corrupted input."""
from __future__ import annotations

from typing import Iterable

import torch

from ..config import ModelConfig
from ..errors import VaekitError
from .base import LatentModel


class AE(LatentModel):
    """Encoder -> code z (B, L) -> decoder -> likelihood parameters. Loss = -log p(target | z); no KL.

    A plain AE has no prior, so after training a Gaussian is fitted to its training codes and sampled (ex-post
    density estimation, Ghosh et al. 2020, sec. 4). Its mean (L,) and Cholesky factor (L, L) are buffers: they
    are saved with the weights, so sampling never needs the training data again.
    """

    optional_state = ("code_mean", "code_scale_tril")  # model files from before the fitted prior

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, code_dim=cfg.latent_dim)
        self.register_buffer("code_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("code_scale_tril", torch.zeros(cfg.latent_dim, cfg.latent_dim))  # zero: not fitted

    @classmethod
    def legacy_state(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # A vaekit.Autoencoder saved before the prior became the model's (f55bef6 to 1f5ad8f) kept it beside the
        # weights as estimator.code_mean (L,) and estimator.code_cov (L, L), 1e-6 already on the diagonal.
        if "estimator.code_mean" not in tensors or "estimator.code_cov" not in tensors:
            return {}
        return {"code_mean": tensors["estimator.code_mean"].float(),
                "code_scale_tril": torch.linalg.cholesky(tensors["estimator.code_cov"].double()).float()}

    @torch.no_grad()
    def fit_prior(self, batches: Iterable[torch.Tensor]) -> None:
        """The Gaussian N(mean, cov) of the training items' codes, with 1e-6 added to cov's diagonal."""
        self.eval()
        codes = torch.cat([self.embed(x).double() for x in batches])  # (N, L)
        L = codes.shape[1]
        cov = torch.cov(codes.T).reshape(L, L) if len(codes) > 1 else torch.zeros(L, L, dtype=codes.dtype)
        cov = cov.to(codes.device) + 1e-6 * torch.eye(L, dtype=torch.float64, device=codes.device)
        self.code_mean.copy_(codes.mean(0))
        self.code_scale_tril.copy_(torch.linalg.cholesky(cov))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not bool(self.code_scale_tril.diagonal().gt(0).all()):
            raise VaekitError("this autoencoder's code prior was never fitted (its model file predates it): "
                              "retrain it, or resume it for one more epoch")
        eps = torch.randn(n, self.cfg.latent_dim, generator=generator, device=self.code_mean.device)
        return self.code_mean + eps @ self.code_scale_tril.T  # (n, L)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
             target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruction negative log-likelihood per sample (B,); ``kl`` is zero so terms match the VAE's."""
        recon = self.recon_nll(self.embed(x), x if target is None else target)
        return {"loss": recon, "recon": recon, "kl": torch.zeros_like(recon)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
