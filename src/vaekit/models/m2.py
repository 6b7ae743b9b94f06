"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling (2014, "Semi-supervised learning with deep
generative models", sec. 2.2): the class y is a latent variable that is observed for the labelled items.

Generative model: p(y) = Cat(1/K), p(z) = N(0, I), p(x | y, z) the decoder on [z, onehot(y)].
Inference: q(y | x) a classifier (the encoder's architecture to K logits) and q(z | x, y) = N(mu, sigma^2) from
the encoder's features of x and onehot(y).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig
from ..data.transforms import STRONG_CUTOUT, STRONG_VIEW, WEAK_VIEW, cutout, random_affine
from ..errors import VaekitError
from .base import LatentModel
from .networks import build_networks
from .priors import WithPrior, build_prior, reparameterize


class M2(WithPrior, LatentModel):
    """Bounds (Kingma et al. 2014, eqs. 6-7), per item:
      labelled:   L(x, y) = -E_q(z|x,y)[log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)
      unlabelled: U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))  (every class decoded: K decoder passes per item)
    Training minimises mean_l L + mean_u U + alpha * mean_l [-log q(y|x)] over a batch's labelled (l) and
    unlabelled (u) items (eq. 9, with the batch means of Wohlert's reference code), plus, with ``consistency`` c
    on images, alpha * c * mean [``consistency_loss``] over the whole batch. Under torchrun each rank takes
    these means over its own slice of the batch and DDP averages the gradients: the weighting of a batch split in
    equal slices, near the global batch's (the labelled share of a slice varies about the epoch's quarter).

    The generic interface works in z: ``embed`` gives the mean of q(z | x, q(y|x)) (the class probabilities
    fed in as a soft one-hot), ``reconstruct`` decodes it with them, and ``decode(z)`` without a class decodes
    with the uniform class mixture; ``decode_class`` decodes a chosen class.
    """

    variational = True
    uses_labels = True
    learned_prior = True
    scores = ("mse", "recon", "elbo")

    def __init__(self, cfg: ModelConfig):
        if cfg.n_classes < 2:
            raise VaekitError(f"the semi-supervised model needs labels of at least 2 classes, got {cfg.n_classes}")
        width = cfg.hidden[-1]
        super().__init__(cfg, code_dim=width)  # self.encoder: x -> features (B, H)
        k, latent = cfg.n_classes, cfg.latent_dim
        # x -> class logits (B, K); its own architecture: q(y|x) is one network, while the decoder runs K times per
        # unlabelled item, so a conv classifier beside an MLP VAE costs little (bench/README.md, few labels)
        self.classifier = build_networks(replace(cfg, arch=cfg.classifier_arch or cfg.arch), k)[0]
        conditional = ModelConfig(**{**cfg.__dict__, "latent_dim": latent + k})
        self.decoder = build_networks(conditional, 1)[1]  # [z, onehot(y)] (B, L + K) -> likelihood parameters
        self.z_head = nn.Linear(width + k, 2 * latent)  # [relu(features), onehot(y)] -> (mu, logvar)
        self.prior = build_prior(cfg)  # p(z); the VampPrior's components are q(z | u, q(y|u)) (``encode``)

    # --- the parts --------------------------------------------------------------------------------------
    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x) as logits: (B, ...) -> (B, K)."""
        return self.classifier(x)

    def _z_params(self, features: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y): features (B, H) and y (B, K) one-hot or probabilities -> mu, logvar (B, L) each."""
        return self.z_head(torch.cat([F.relu(features), y.to(features.dtype)], -1)).chunk(2, dim=-1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y) with y = q(y | x)'s probabilities: mu, logvar (B, L)."""
        return self._z_params(self.encoder(x), self.class_logits(x).softmax(-1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]


    def encoder_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        return {"mean": mu, "logvar": logvar, "class_logits": self.class_logits(x)}

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """[z, y] -> likelihood parameters (B, D); y (B, K) one-hot or probabilities, uniform when None."""
        if y is None:
            y = z.new_full((len(z), self.cfg.n_classes), 1.0 / self.cfg.n_classes)
        return self.decoder(torch.cat([z, y.to(z.dtype)], -1))

    def decoder_inputs(self) -> dict[str, int]:
        """z (B, L) and y (B, K), a class one-hot or class probabilities."""
        return {"z": self.cfg.latent_dim, "y": self.cfg.n_classes}

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Expected x for codes z (B, L) and classes y (B, K) (the uniform mixture when None): (B, *input_shape)."""
        return self.observe(self.decode(z, y))

    def decode_class(self, z: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None,
                     draw: bool = False) -> torch.Tensor:
        """Codes z (B, L) of classes ``label`` (B,) ints -> items (B, *input_shape): the likelihood's mean, or with
        ``draw`` values drawn from p(x | y, z)."""
        return self.observe(self.decode(z, F.one_hot(label, self.cfg.n_classes).to(z.dtype)), generator, draw)

    def sample(self, n: int, generator: torch.Generator | None = None, draw: bool = False,
               label: torch.Tensor | None = None) -> torch.Tensor:
        """n new items at codes drawn from the prior, decoded as classes ``label`` (n,) ints (None: the uniform
        class mixture): the likelihood's mean, or with ``draw`` values drawn from it: (n, *input_shape)."""
        z = self.sample_prior(n, generator)
        if label is None:
            return self.decode_items(z, generator, draw)
        return self.decode_class(z, label, generator, draw)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.class_logits(x).softmax(-1)
        return self.decode_mean(self._z_params(self.encoder(x), probs)[0], probs)

    # --- the bounds -------------------------------------------------------------------------------------
    def _given_class(self, features: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                     generator: torch.Generator | None, at_mean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-log p(x | y, z) at one z ~ q(z | x, y) (its mean with ``at_mean``), and KL(q(z | x, y) || p(z)) (closed
        form under N(0, I), else the one-sample estimate at z): (B,) each; y (B, K) one-hot."""
        mu, logvar = self._z_params(features, y)
        z = mu if at_mean else reparameterize(mu, logvar, generator)
        params = self.decode(z, y).float()
        return -self.likelihood.log_prob(params, target.flatten(1).float()), self.code_kl(z, mu, logvar).sum(-1)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None, target: torch.Tensor | None = None,
             labels: torch.Tensor | None = None, at_mean: bool = False) -> dict[str, torch.Tensor]:
        """Per-item terms (B,): ``recon`` = E_q(y|x)[-log p(x|y,z)], ``kl`` = E_q(y|x)[KL(q(z|x,y) || p(z))] +
        KL(q(y|x) || p(y)), ``loss`` = their sum, the bound L (labelled) or U (unlabelled), ``kl_y`` = the class
        part KL(q(y|x) || p(y)) of ``kl`` (log K for a labelled item) and ``ce`` = -log q(y|x) of the labelled
        items (0 for the others). ``labels`` (B,) ints, -1 = unlabelled; None: all
        unlabelled."""
        target = x if target is None else target
        k = self.cfg.n_classes
        features, log_q = self.encoder(x), self.class_logits(x).float().log_softmax(-1)  # (B, H), (B, K)
        known = labels >= 0 if labels is not None else torch.zeros(len(x), dtype=torch.bool, device=x.device)
        recon = x.new_zeros(len(x), dtype=torch.float32)
        kl = torch.zeros_like(recon)
        ce = torch.zeros_like(recon)
        kl_y = torch.zeros_like(recon)
        if known.any():
            y = labels[known]
            r, kz = self._given_class(features[known], F.one_hot(y, k), target[known], generator, at_mean)
            recon[known] = r
            kl_y[known] = math.log(k)  # KL(point mass on y || uniform) = log K
            kl[known] = kz + math.log(k)
            ce[known] = -log_q[known].gather(1, y[:, None])[:, 0]
        if not known.all():
            free = ~known
            n = int(free.sum())
            y_all = torch.eye(k, device=x.device).repeat_interleave(n, 0)  # (K * n, K), class-major
            tiled = (1, ) * (target.dim() - 1)
            r, kz = self._given_class(features[free].repeat(k, 1), y_all, target[free].repeat(k, *tiled), generator,
                                      at_mean)
            q = log_q[free].exp().T  # (K, n)
            recon[free] = (q * r.view(k, n)).sum(0)
            kl_y[free] = (q * (log_q[free].T + math.log(k))).sum(0)
            kl[free] = (q * kz.view(k, n)).sum(0) + kl_y[free]
        return {"loss": recon + kl, "recon": recon, "kl": kl, "kl_y": kl_y, "ce": ce}

    def objective(self, x: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, weight: float | torch.Tensor,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.loss(x, target=target, labels=labels)
        # the KL weight (warm-up, beta) scales KL(q(z|x,y) || p(z)) as for the VAE; the class term is left whole:
        # scaled down early, it would weaken the entropy term -H(q(y|x)) and let the classifier commit on unlabelled
        # items before the decoder can judge its choice
        bound = terms["recon"] + weight * (terms["kl"] - terms["kl_y"]) + terms["kl_y"]
        known = labels >= 0 if labels is not None else torch.zeros_like(bound, dtype=torch.bool)
        loss = bound.new_zeros(())
        for part in (known, ~known):
            if part.any():
                loss = loss + bound[part].mean()
        if known.any():
            loss = loss + cfg.alpha * terms["ce"][known].mean()
        if cfg.consistency:
            every = labels if labels is not None else torch.full_like(known, -1, dtype=torch.long)
            loss = loss + cfg.alpha * cfg.consistency * self.consistency_loss(x, every,
                                                                              cfg.consistency_threshold).mean()
        return loss, terms

    def consistency_loss(self, x: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
        """FixMatch's term (Sohn et al. 2020, eq. 4), with the labelled items in it: -log q(y*|strong view of x),
        where y* is the item's label, or, for an unlabelled item, the class q(y | weak view of x), aligned to the
        uniform p(y), gives at least ``threshold`` (no gradient through that guess); 0 for an item without either.
        The strong view ends in Cutout. x (B, C, H, W) images, labels (B,) ints (-1 = unlabelled) -> (B,)."""
        with torch.no_grad():
            probs = self.class_logits(random_affine(x, **WEAK_VIEW)).float().softmax(-1)  # (B, K)
            # distribution alignment (Berthelot et al. 2020, ReMixMatch, sec. 3.2): q(y|x) * p(y) / the batch's mean
            # q(y|x), renormalised, with M2's p(y) = 1/K. A class the classifier over-predicts loses confidence and
            # one it neglects gains, so a confusion it commits to early does not feed itself (one 100-label MNIST
            # draw: 3.53 -> 2.76 % error; bench/results/few_labels_mnist_ablation.json)
            probs = probs / probs.mean(0, keepdim=True)
            confidence, guess = (probs / probs.sum(-1, keepdim=True)).max(-1)
        known = labels >= 0
        target = torch.where(known, labels, guess)  # (B,)
        counted = known | (confidence >= threshold)
        logits = self.class_logits(cutout(random_affine(x, **STRONG_VIEW), STRONG_CUTOUT)).float()  # (B, K)
        return F.cross_entropy(logits, target, reduction="none") * counted

    def anomaly_score(self, x: torch.Tensor, score: str, samples: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        if score == "recon":  # -log p(x | y, z) at q(y|x)'s probabilities and q(z|x, y)'s mean, as reconstruct
            probs = self.class_logits(x).softmax(-1)
            mu, _ = self._z_params(self.encoder(x), probs)
            return -self.likelihood.log_prob(self.decode(mu, probs).float(), x.flatten(1).float())
        if score == "elbo":  # U(x) at z's posterior means (samples = 0), else averaged over that many draws
            if not samples:
                return self.loss(x, at_mean=True)["loss"]
            return torch.stack([self.loss(x, generator)["loss"] for _ in range(samples)]).mean(0)
        return super().anomaly_score(x, score, samples, generator)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(x)
