"""The variational autoencoder of Kingma & Welling (2014), with its prior and its depth as parameters.

- One stochastic layer with p(z) = N(0, I) (the default) is the MLP VAE of the PyTorch and Keras examples.
- ``prior``: a learned mixture of Gaussians or the VampPrior (``priors.py``).
- ``hierarchy``: stochastic layers z_1 .. z_{L-1} below the code z_L, the HVAE of Tomczak & Welling (2018, sec. 4)
  generalised to any depth. Generative: p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1, ..., z_L);
  inference top-down in the same order: q(z_L | x) q(z_{L-1} | x, z_L) ... q(z_1 | x, z_2). Each lower layer is a
  ``LowerLayer`` module; the decoder reads every layer (as the paper's p(x | z_1, z_2)).

Pure: no files, no printing. ``loss(x)`` returns named per-sample terms.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig
from ..objectives import draw_dtype
from .base import LatentModel
from .networks import build_networks, mlp
from .priors import WithPrior, build_prior, gaussian_kl_per_dim, gaussian_log_density, reparameterize

LOGVAR_RANGE = (-30.0, 20.0)  # exp() of the log-variance stays finite in fp32 and bf16


# per stochastic layer, top first: (d_mu, d_logvar), each (B, d), added to q's mean and log-variance for B items
Shifts = list[tuple[torch.Tensor, torch.Tensor]]


def _gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's output (..., 2L) -> mean and clamped log-variance (..., L) each."""
    mu, logvar = params.chunk(2, dim=-1)
    return mu, logvar.clamp(*LOGVAR_RANGE)


def _shifted(mu: torch.Tensor, logvar: torch.Tensor, shift: tuple[torch.Tensor, torch.Tensor] | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """q's mean and log-variance (..., B, d), moved by a per-item shift (B, d) each (broadcast over samples): the mean
    by d_mu standard deviations, the log-variance by d_logvar."""
    if shift is None:
        return mu, logvar
    d_mu, d_logvar = shift
    dtype = draw_dtype(mu.dtype)  # as ``_draw`` draws
    mu, logvar = mu.to(dtype), logvar.to(dtype)
    # the mean moves in units of q's own standard deviation: one step size fits every dim, however narrow
    return mu + torch.exp(0.5 * logvar) * d_mu.to(dtype), (logvar + d_logvar.to(dtype)).clamp(*LOGVAR_RANGE)


class LowerLayer(nn.Module):
    """A stochastic layer z_l under z_{l+1} (width ``above``): its posterior q(z_l | x, z_{l+1}) and its prior
    p(z_l | z_{l+1}), diagonal Gaussians (Tomczak & Welling 2018, sec. 4). q reads x through an encoder network of
    its own (the architecture's, to the last hidden width H), as the paper's q(z_1 | x, z_2) does."""

    def __init__(self, cfg: ModelConfig, dim: int, above: int):
        super().__init__()
        width = cfg.hidden[-1]
        self.features = build_networks(cfg, width)[0]  # x (B, ...) -> (B, H)
        self.posterior = nn.Sequential(*mlp([width + above, width]), nn.Linear(width, 2 * dim))
        self.conditional_prior = nn.Sequential(*mlp([above, width], cfg.dropout), nn.Linear(width, 2 * dim))

    def q(self, features: torch.Tensor, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, H) of x and z_{l+1} (..., B, d') -> mean and log-variance of q(z_l | x, z_{l+1}) (..., B, d)."""
        h = F.relu(features).to(z_above.dtype).expand(*z_above.shape[:-1], features.shape[-1])
        return _gaussian(self.posterior(torch.cat([h, z_above], -1)))

    def p(self, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_{l+1} (..., d') -> mean and log-variance of p(z_l | z_{l+1}) (..., d)."""
        return _gaussian(self.conditional_prior(z_above))


class VAE(WithPrior, LatentModel):
    """Encoder -> (mu, logvar) of q(z|x); z = mu + sigma * eps; decoder -> likelihood parameters. The prior is
    ``self.prior`` and the layers below the code are ``self.lower`` (bottom first; empty for one layer)."""

    variational = True
    importance_sampled = True
    learned_prior = True
    layered = True
    scores = ("mse", "recon", "elbo")

    def __init__(self, cfg: ModelConfig):
        sizes = (*cfg.hierarchy, cfg.latent_dim)  # z_1 (next to x) .. z_L (the code)
        super().__init__(cfg, code_dim=2 * cfg.latent_dim, decoder_dim=sum(sizes))
        self.prior = build_prior(cfg)
        self.lower = nn.ModuleList(LowerLayer(cfg, dim, above) for dim, above in zip(sizes[:-1], sizes[1:]))

    # --- the parts --------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *input_shape) -> mean and log-variance of q(z|x) of the code (the top layer), each (B, L)."""
        return _gaussian(self.encoder(x))  # (B, L) each

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def encoder_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        return {"mean": mu, "logvar": logvar}  # (B, L) each

    # --- the hierarchy ----------------------------------------------------------------------------------
    @property
    def layer_sizes(self) -> list[int]:
        """Each stochastic layer's width, top (the code z_L) first, as ``_posterior`` lists them."""
        return [self.cfg.latent_dim, *self.cfg.hierarchy[::-1]]

    def _posterior(self, x: torch.Tensor, k: int | None = None, generator: torch.Generator | None = None,
                   at_mean: bool = False, shared: bool = False, shifts: Shifts | None = None
                   ) -> list[tuple[torch.Tensor, ...]]:
        """One top-down pass of q: [(z, mu, logvar) of z_L (the code), then z_{L-1}, ..., z_1]. z is (K, B, d) with
        ``k`` draws per item, else (B, d); the top's mu and logvar are (B, L), a lower layer's are shaped like its
        z. ``at_mean``: every z at its mean; ``shared``: one draw of the noise for all items ((K, 1, d)).
        ``shifts``: per item (d_mu, d_logvar), each (B, d), added to each layer's mean and log-variance, top first
        (a proposal refined for these items, ``objectives.refine_proposal``)."""
        shifts = shifts or [None] * (len(self.lower) + 1)
        mu, logvar = _shifted(*self.encode(x), shifts[0])
        layers = [(self._draw(mu, logvar, k, generator, at_mean, shared), mu, logvar)]
        for layer, shift in zip(reversed(self.lower), shifts[1:], strict=True):
            mu_l, logvar_l = _shifted(*layer.q(layer.features(x), layers[-1][0]), shift)
            layers.append((self._draw(mu_l, logvar_l, None, generator, at_mean, shared), mu_l, logvar_l))
        return layers

    @staticmethod
    def _draw(mu: torch.Tensor, logvar: torch.Tensor, k: int | None, generator: torch.Generator | None,
              at_mean: bool, shared: bool) -> torch.Tensor:
        """A reparameterised draw from N(mu, exp(logvar)): mu's shape, or (K, *mu.shape) with ``k``."""
        if at_mean:
            return mu if k is None else mu.expand(k, *mu.shape)
        if k is None and not shared:
            return reparameterize(mu, logvar, generator)
        dtype = draw_dtype(mu.dtype)
        mu, logvar = mu.to(dtype), logvar.to(dtype)
        shape = (*(() if k is None else (k,)), *mu.shape)
        if shared:  # (K, 1, d): the item axis broadcasts
            shape = (*shape[:-2], 1, shape[-1])
        eps = torch.randn(shape, generator=generator, device=mu.device).to(dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def _decoder_input(self, layers: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """[z_L, z_{L-1}, ..., z_1] concatenated: (..., sum of the layers' sizes); z alone for one layer."""
        zs = [z for z, *_ in layers]
        return zs[0] if len(zs) == 1 else torch.cat([z.to(zs[-1].dtype) for z in zs], -1)

    def _params(self, layers: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """Likelihood parameters for drawn layers, fp32: (..., B, D), any leading sample axes kept (a conv decoder
        takes one batch axis)."""
        z = self._decoder_input(layers)
        return self.decoder(z.flatten(0, -2)).float().view(*z.shape[:-1], -1)

    def _below(self, z: torch.Tensor, generator: torch.Generator | None = None, draw: bool = False
               ) -> list[tuple[torch.Tensor, ...]]:
        """The layers under a code z (B, L) by the generative model: each at the mean of p(z_l | z_{l+1}), or drawn
        from it with ``draw`` (ancestral sampling)."""
        layers = [(z,)]
        for layer in reversed(self.lower):
            mu, logvar = layer.p(layers[-1][0])
            layers.append((reparameterize(mu, logvar, generator) if draw else mu,))
        return layers

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A code (B, L) -> likelihood parameters (B, D); the layers below it at their conditional means."""
        return self.decoder(self._decoder_input(self._below(z)) if self.lower else z)

    def sample(self, n: int, generator: torch.Generator | None = None, draw: bool = False) -> torch.Tensor:
        """n new items: the code from the prior, each lower layer drawn given the one above, then the likelihood's
        mean (or with ``draw`` values drawn from it)."""
        layers = self._below(self.sample_prior(n, generator), generator, draw=True)
        return self.observe(self._params(layers), generator, draw)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded from the posterior means of every layer: (B, ...) -> (B, *input_shape)."""
        return self.observe(self._params(self._posterior(x, at_mean=True)))

    # --- the bounds -------------------------------------------------------------------------------------
    def _recon_kl(self, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None,
                  at_mean: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-log p(target | z_1..z_L) at one draw of every layer (B,), and each layer's KL, top first: (B, d) per dim
        where it has a closed form (the code under N(0, I); a lower layer against p(z_l | z_{l+1}) at the drawn
        z_{l+1}), else (B, 1), the one-sample estimate log q(z|x) - log p(z) (Tomczak & Welling 2018, eq. 8)."""
        layers = self._posterior(x, generator=generator, at_mean=at_mean)
        recon = -self.likelihood.log_prob(self._params(layers), target.flatten(1).float())
        kls = [self.code_kl(*layers[0])]  # (B, L) or (B, 1)
        for (z_above, *_), (_, mu_l, logvar_l), layer in zip(layers[:-1], layers[1:], reversed(self.lower)):
            p_mu, p_logvar = layer.p(z_above)
            kls.append(gaussian_kl_per_dim(mu_l.float(), logvar_l.float(), p_mu.float(), p_logvar.float()))
        return recon, kls

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
             target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Negative ELBO per sample and its terms, each (B,), accumulated in fp32.

        loss = -E_q[log p(target|z)] + KL(q(z|x) || p(z)), one sample of z (Kingma & Welling 2014, eq. 10); with
        lower layers the KL is the sum of the layers' (Tomczak & Welling 2018, eq. 17). ``target`` defaults to
        ``x``; a denoising model passes the clean items as target. ``kl_per_dim`` (B, C): every layer's KL, top
        first, per dim where it has a closed form and as one column (its total) where not (``_kl_columns``).
        """
        recon, kls = self._recon_kl(x, x if target is None else target, generator)
        kl_dims = torch.cat(kls, -1) if len(kls) > 1 else kls[0]
        kl = kl_dims.sum(-1)
        return {"loss": recon + kl, "recon": recon, "kl": kl, "kl_per_dim": kl_dims}

    def log_weight_terms(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                         target: torch.Tensor | None = None, shared: bool = False, shifts: Shifts | None = None
                         ) -> dict[str, torch.Tensor]:
        """Importance log-weights for k draws of every layer from q (the whole inference network is the proposal):
        ``log_w`` = log p(target, z_1..z_L) - log q(z_1..z_L | x) and its parts ``log_px``, ``log_pz``, ``log_q``,
        each (K, B) fp32 (Burda et al. 2016, eq. 8). ``shared``: the same noise for every item of x; ``shifts``:
        q moved per item (``_posterior``), the proposal then being the moved q."""
        target = x if target is None else target
        layers = self._posterior(x, k, generator, shared=shared, shifts=shifts)
        log_px = self.likelihood.log_prob(self._params(layers), target.flatten(1).float())  # (K, B), broadcast target
        log_q = sum(gaussian_log_density(z, mu, logvar) for z, mu, logvar in layers)  # (K, B)
        log_pz = self.log_prior(layers[0][0])
        for (z_above, *_), (z, *_), layer in zip(layers[:-1], layers[1:], reversed(self.lower)):
            log_pz = log_pz + gaussian_log_density(z, *layer.p(z_above))
        return {"log_w": log_px + log_pz - log_q, "log_px": log_px, "log_pz": log_pz, "log_q": log_q}

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    target: torch.Tensor | None = None, shifts: Shifts | None = None) -> torch.Tensor:
        """log p(target, z_k) - log q(z_k|x) for k draws from q (moved by ``shifts``): (K, B), fp32
        (objectives.importance_sampled_nll)."""
        return self.log_weight_terms(x, k, generator, target, shifts=shifts)["log_w"]

    def objective(self, x: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, weight: float | torch.Tensor,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar to minimise, per-item terms to log). The logged ``loss`` is the honest one-sample negative
        ELBO, as in validation, whatever beta (``weight``), warm-up, free bits or the IWAE bound do to the
        objective."""
        if cfg.iw_samples > 1:
            t = self.log_weight_terms(x, cfg.iw_samples, target=target)
            bound = torch.logsumexp(t["log_w"], dim=0) - math.log(cfg.iw_samples)  # (B,), Burda et al. 2016 eq. 8
            # the logged terms are a one-sample ELBO, read off the first of the K draws (no second pass)
            recon, kl = -t["log_px"][0].detach(), (t["log_q"][0] - t["log_pz"][0]).detach()  # (B,) each
            return -bound.mean(), {"loss": recon + kl, "recon": recon, "kl": kl}
        terms = self.loss(x, target=target)
        if cfg.free_bits > 0:
            # free bits (Kingma et al. 2016, sec. C.8): each latent dim's batch-mean KL counts at least free_bits
            # nats (no gradient below); a layer whose KL has no per-dim form gets free_bits x its size as a whole
            kl_dims = terms["kl_per_dim"].mean(0)  # (C,)
            kl = sum(torch.clamp(kl_dims[columns], min=cfg.free_bits * size / (columns.stop - columns.start)).sum()
                     for columns, size in self._kl_columns())
        else:
            kl = terms["kl"].mean()
        return terms["recon"].mean() + weight * kl, terms

    def _kl_columns(self) -> list[tuple[slice, int]]:
        """Where each stochastic layer's KL sits in ``kl_per_dim`` and the layer's size, top (the code) first: L
        columns for a code under N(0, I), one under a learned prior; one per dim for every lower layer."""
        sizes = self.layer_sizes
        widths = [sizes[0] if self.prior.analytic else 1, *sizes[1:]]
        starts = [sum(widths[:i]) for i in range(len(widths))]
        return [(slice(start, start + width), size) for start, width, size in zip(starts, widths, sizes)]

    def anomaly_score(self, x: torch.Tensor, score: str, samples: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``elbo``: the negative ELBO -E_q[log p(x|z)] + KL(q(z|x) || p(z)), (B,); with ``samples=0`` at the
        posterior means, else averaged over that many draws. ``recon``: -log p(x | the posterior means). Others:
        the base's."""
        if score == "recon":
            return self._recon_kl(x, x, at_mean=True)[0]
        if score != "elbo":
            return super().anomaly_score(x, score, samples, generator)
        draws = [self._recon_kl(x, x, generator, at_mean=not samples) for _ in range(max(samples, 1))]
        return torch.stack([recon + sum(k.sum(-1) for k in kls) for recon, kls in draws]).mean(0)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
