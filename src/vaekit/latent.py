"""Latent-space computations for pictures and numbers. Pure tensor/array code: no files."""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import torch

from .tensors import model_input


@torch.no_grad()
def posterior_means(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    """Posterior means of q(z|x) (for an AE: the codes) for stored items x (N, ...): (N, L) float32."""
    model.eval()
    return torch.cat([model.embed(model_input(x[i:i + batch_size])).float()
                      for i in range(0, len(x), batch_size)]).cpu().numpy()


@torch.no_grad()
def class_predictions(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    """The most probable class under a model of labels' q(y|x) for stored items x (N, ...): (N,) ints."""
    model.eval()
    return torch.cat([model.class_logits(model_input(x[i:i + batch_size])).argmax(1)
                      for i in range(0, len(x), batch_size)]).cpu().numpy()


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) int64: items of true class i (row) predicted as class j (column)."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@torch.no_grad()
def kl_per_dim(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    """Mean KL of each latent dimension over x, by the model's own measure (``VAE.kl_per_dim``): (L,). Large = a
    used dimension."""
    total = None
    for i in range(0, len(x), batch_size):
        kl = model.kl_per_dim(model_input(x[i:i + batch_size])).float()  # (L,)
        total = kl if total is None else total + kl
    return (total / len(x)).cpu().numpy()


def gaussian_quantiles(n: int, eps: float = 0.05) -> np.ndarray:
    """n points at evenly spaced quantiles of N(0, 1), from ``eps`` to ``1 - eps`` (the Keras blog's grid)."""
    return np.array([NormalDist().inv_cdf(p) for p in np.linspace(eps, 1 - eps, n)], np.float32)


def manifold_codes(n: int, base: np.ndarray, dims: tuple[int, int],
                   scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """n*n latent codes scanning dims (a, b) at Gaussian quantiles, the other coordinates at ``base``.

    Coordinate = base + scale * quantile (scale 1 for a VAE's N(0, I) prior; an AE's code spread).
    Row r (top to bottom) has decreasing z_b; column c has increasing z_a: (n*n, L).
    """
    q = gaussian_quantiles(n)
    codes = np.tile(base.astype(np.float32), (n * n, 1))
    a, b = dims
    codes[:, a] = base[a] + scale[0] * np.tile(q, n)
    codes[:, b] = base[b] + scale[1] * np.repeat(q[::-1], n)
    return codes


def interpolate(z0: np.ndarray, z1: np.ndarray, steps: int) -> np.ndarray:
    """Linear path from z0 to z1 (both ends included): (steps, L)."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return (1 - t) * z0[None] + t * z1[None]


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project (N, L) onto its first two principal axes: (projected (N, 2), mean (L,), axes (2, L))."""
    mean = points.mean(0)
    _, s, vt = np.linalg.svd(points - mean, full_matrices=False)
    axes = np.zeros((2, points.shape[1]), vt.dtype)
    axes[:min(2, len(vt))] = vt[:2]  # a test split of one item has one axis: the second stays zero
    return (points - mean) @ axes.T, mean, axes


def explained_variance(points: np.ndarray) -> np.ndarray:
    """Fraction of the variance along each principal axis, at least two entries (zeros when there is none)."""
    s = np.linalg.svd(points - points.mean(0), compute_uv=False) ** 2
    s = np.pad(s, (0, max(0, 2 - len(s))))
    return s / s.sum() if s.sum() > 0 else s


def probes(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray) -> dict:
    """How useful the codes are from the labelled training items (y >= 0): test accuracy of a logistic
    regression (a linear probe) and of a 5-NN classifier fitted on their codes (N, L), and their number."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    known = train_y >= 0
    out = {"knn_probe_accuracy": knn_accuracy(train_z[known], train_y[known], test_z, test_y, k=5),
           "probe_labels": int(known.sum())}
    if len(np.unique(train_y[known])) >= 2:  # one-class training (--normal-class) has no linear probe
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        out["linear_probe_accuracy"] = float(linear.fit(train_z[known], train_y[known]).score(test_z, test_y))
    return out


def knn_accuracy(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray,
                 k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier fitted on the training codes, scored on the test codes."""
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, len(train_z))  # tiny training sets (e.g. one class of a small dataset)
    return float(KNeighborsClassifier(n_neighbors=k).fit(train_z, train_y).score(test_z, test_y))
