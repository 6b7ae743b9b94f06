"""What every autoencoder shares: a decoder to likelihood parameters, and the likelihood itself."""
from __future__ import annotations

from typing import ClassVar, Iterable

import torch
from torch import nn

from ..config import ModelConfig, TrainConfig
from ..errors import VaekitError
from .likelihoods import LIKELIHOODS
from .networks import build_networks


class LatentModel(nn.Module):
    """Encoder to ``code_dim`` outputs and a decoder mirroring it (MLP or conv, by ``cfg.arch``)."""

    # A VAE: an encoder to q(z|x), the prior p(z) = N(0, I) and a bound on log p(x). Code that must know the
    # kind asks the model (this flag, or the methods below), never isinstance/hasattr.
    variational: ClassVar[bool] = False
    # The anomaly scores ``anomaly_score`` gives for this kind of model (``vaekit anomalies --score``).
    scores: ClassVar[tuple[str, ...]] = ("mse", "recon")
    # log p(x) by importance sampling with the Gaussian q(z|x) (objectives.importance_sampled_nll: `--nll`).
    importance_sampled: ClassVar[bool] = False
    # Trained on labels too (-1 = unlabelled): the training loop hands ``objective`` each batch's labels.
    uses_labels: ClassVar[bool] = False
    # Takes --prior (a learned prior over its code: the VAE, M2) and --hierarchy (stochastic layers below the code:
    # the VAE).
    learned_prior: ClassVar[bool] = False
    layered: ClassVar[bool] = False
    # Buffers a model file may lack (written before they existed); loading keeps their initial values. (Old files
    # also load through ``legacy_state``, renamed tensors, and a module's own ``_load_from_state_dict``: the
    # autoregressive likelihood's window mask.)
    optional_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: ModelConfig, code_dim: int, decoder_dim: int | None = None):
        """``code_dim``: the encoder's outputs; ``decoder_dim``: the decoder's inputs (default ``latent_dim``)."""
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        self.encoder, self.decoder = build_networks(cfg, code_dim, decoder_dim)
        self.likelihood = LIKELIHOODS[cfg.likelihood](cfg)

    @classmethod
    def legacy_state(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """State that older model files of this kind kept under other names, renamed as the model's own state
        dict names it (the current names win where a file has both). None here."""
        return {}

    def weight_matrices(self) -> list[nn.Parameter]:
        """The parameters ``--weight-decay-scope weights`` decays: those of two or more dims (the networks' weight
        matrices and convolution kernels, the autoregressive likelihood's masked layer and its units' gains), not
        biases, whatever their shape (the autoregressive units' are (C, M))."""
        return [p for name, p in self.named_parameters() if p.ndim >= 2 and not name.endswith("bias")]

    def decoder_inputs(self) -> dict[str, int]:
        """What ``decode_mean`` takes, by name and size per item (an exported decoder's inputs): z (B, L) here."""
        return {"z": self.cfg.latent_dim}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> likelihood parameters (B, D), e.g. Bernoulli logits."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L) -> expected x, shaped like the data (B, *input_shape)."""
        return self.decode_items(z)

    def decode_items(self, z: torch.Tensor, generator: torch.Generator | None = None,
                     draw: bool = False) -> torch.Tensor:
        """Codes (B, L) -> items (B, *input_shape): the likelihood's mean, or with ``draw`` values drawn from it."""
        return self.observe(self.decode(z), generator, draw)

    def recon_nll(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(target | z) summed over dimensions, in fp32: z (B, L) or (K, B, L), target (B, ...) -> (B,)
        or (K, B). With K samples per item the target broadcasts over them; it is never copied K times."""
        params = self.decode(z.flatten(0, -2)).float().view(*z.shape[:-1], -1)  # (..., D)
        return -self.likelihood.log_prob(params, target.flatten(1).float())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A deterministic code for each item: (B, ...) -> (B, L)."""
        raise NotImplementedError

    def encoder_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the encoder gives each item, by name (the names of an exported encoder's outputs): (B, ...) ->
        {"code": (B, L)}; a VAE gives its posterior's mean and log-variance instead."""
        return {"code": self.embed(x)}

    def objective(self, x: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, weight: float | torch.Tensor,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar to minimise, per-item terms to log) for a batch x (B, ...) and its target (the clean items
        of a denoiser). Here the reconstruction NLL; ``weight`` (the KL weight) does not apply."""
        terms = self.loss(x, target=target)
        return terms["loss"].mean(), terms

    def anomaly_score(self, x: torch.Tensor, score: str, samples: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """One score per item of x (B, ...), (B,), higher = more anomalous. ``mse``: squared error of the
        reconstruction from the deterministic code (PyOD's autoencoders score so); ``recon``: -log p(x | code)."""
        if score == "mse":
            return (self.reconstruct(x).float() - x.float()).pow(2).flatten(1).sum(-1)
        if score == "recon":
            return self.recon_nll(self.embed(x), x)
        raise VaekitError(f"the {score} score needs a VAE; this model is a plain autoencoder (use --score recon)")

    def fit_prior(self, batches: Iterable[torch.Tensor]) -> None:
        """Fit the prior to the training items (model-input batches (B, ...)) after training; a model whose prior
        is fixed or learned in training (a VAE's) ignores them, and never draws a batch."""

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from the prior p(z), to decode into new items: (n, L) on the model's device. N(0, I) here."""
        device = next(self.parameters()).device
        return torch.randn(n, self.cfg.latent_dim, generator=generator, device=device)

    def sample(self, n: int, generator: torch.Generator | None = None, draw: bool = False) -> torch.Tensor:
        """n new items at codes drawn from the prior: the likelihood's mean, or with ``draw`` values drawn from
        it: (n, *input_shape)."""
        return self.decode_items(self.sample_prior(n, generator), generator, draw)

    def observe(self, params: torch.Tensor, generator: torch.Generator | None = None,
                draw: bool = False) -> torch.Tensor:
        """Likelihood parameters (B, D) -> items (B, *input_shape): the mean, or with ``draw`` values drawn
        from p(x | z) (for an autoregressive likelihood the only exact picture of it)."""
        params = params.float()
        values = self.likelihood.draw(params, generator) if draw else self.likelihood.mean(params)
        return values.view(-1, *self.input_shape)

    def code_spread(self, codes: torch.Tensor) -> torch.Tensor:
        """How far to scan each latent dim in pictures, (L,): the spread of the items' codes (N, L) here; a VAE
        scans its prior's."""
        return codes.float().std(0, correction=0)  # as numpy: 0, not NaN, for a single code

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Expected reconstruction from the deterministic code: (B, ...) -> (B, *input_shape)."""
        return self.decode_mean(self.embed(x))
