"""Anomaly scores, thresholds and detection metrics. Pure tensor/array code: no files.

Train on normal data; an item the model reconstructs or explains badly is anomalous. Scores are
"higher = more anomalous" and deterministic unless Monte Carlo samples are asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import VaekitError
from .tensors import model_input

SCORES = ("mse", "recon", "elbo")


@torch.no_grad()
def score_items(model: torch.nn.Module, x: torch.Tensor, score: str = "recon", samples: int = 0,
                seed: int = 0, batch_size: int = 2000) -> np.ndarray:
    """One score per stored item x (N, ...): (N,) float64, higher = more anomalous.

    mse: squared error between x and its reconstruction from the deterministic code, summed over
    dimensions (whatever likelihood the model was trained with; PyOD's autoencoders score this way).
    recon: -log p(x | z = code(x)), the reconstruction error under the model's likelihood.
    elbo: the negative ELBO, -E_q[log p(x|z)] + KL(q(z|x) || p(z)); with ``samples=0`` the expectation is
    taken at the posterior mean (deterministic), else estimated with that many seeded draws of z.
    """
    if score not in SCORES:
        raise VaekitError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
    if score not in model.scores:  # before any work: the model's own method says it too
        raise VaekitError(f"the {score} score is not defined for --model {model.cfg.model}: choose from "
                          f"{', '.join(model.scores)}")
    model.eval()
    device = next(model.parameters()).device  # x may sit elsewhere (e.g. on the CPU): batches move one at a time
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, len(x), batch_size):
        xb = model_input(x[start:start + batch_size].to(device, non_blocking=True))
        out.append(model.anomaly_score(xb, score, samples, gen))
    return torch.cat(out).double().cpu().numpy()


SCORED_ITEMS = 10_000  # training items a run scores for its thresholds: a 0.1 % quantile still has 10 above it


def training_scores(model: torch.nn.Module, x_train: torch.Tensor) -> dict[str, np.ndarray]:
    """Each score the model knows, for up to ``SCORED_ITEMS`` evenly spaced training items: {score: (n,)}. Saved
    with the model, they set thresholds without the training data."""
    step = -(-len(x_train) // SCORED_ITEMS)  # ceil
    return {score: score_items(model, x_train[::step], score) for score in model.scores}


def threshold_at(train_scores: np.ndarray, contamination: float) -> float:
    """The (1 - contamination) quantile of the training scores: that share of normal data is flagged."""
    if not 0.0 < contamination < 0.5:
        raise VaekitError(f"contamination must be in (0, 0.5), got {contamination}")
    return float(np.quantile(train_scores, 1.0 - contamination))


@dataclass(frozen=True)
class Detection:
    scores: np.ndarray  # (N,)
    threshold: float
    flags: np.ndarray  # (N,) bool
    is_anomaly: np.ndarray | None  # (N,) bool ground truth, when labels tell it
    auroc: float | None
    average_precision: float | None


def detect(scores: np.ndarray, threshold: float, is_anomaly: np.ndarray | None = None) -> Detection:
    """Flags at ``threshold``, and AUROC / average precision when the truth is known."""
    auroc = ap = None
    if is_anomaly is not None and 0 < is_anomaly.sum() < len(is_anomaly):
        from sklearn.metrics import average_precision_score, roc_auc_score

        auroc = float(roc_auc_score(is_anomaly, scores))
        ap = float(average_precision_score(is_anomaly, scores))
    return Detection(scores, threshold, scores > threshold, is_anomaly, auroc, ap)
