"""Corruptions for denoising (``gaussian:SIGMA``, ``masking:P``, ``salt-pepper:P`` on items in [0, 1]) and the
random affine views of images that consistency training compares."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import VaekitError

KINDS = ("gaussian", "masking", "salt-pepper")


def parse_noise(spec: str) -> tuple[str, float]:
    """``"gaussian:0.5"`` -> ("gaussian", 0.5), checked."""
    kind, _, level = spec.partition(":")
    try:
        value = float(level)
    except ValueError:
        value = float("nan")
    if kind not in KINDS or not value == value or value < 0 or (kind != "gaussian" and value > 1):
        raise VaekitError(f"noise {spec!r} not understood; use gaussian:SIGMA, masking:P or salt-pepper:P "
                          "(P in [0, 1])")
    return kind, value


def corrupt(x: torch.Tensor, spec: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupted copy of a batch x (B, ...) in [0, 1]; the result stays in [0, 1].

    gaussian: x + sigma * eps, clipped; masking: each value set to 0 with probability p;
    salt-pepper: each value set to 0 or 1 (half each) with probability p.
    """
    kind, level = parse_noise(spec)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "gaussian":
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + level * eps).clamp_(0.0, 1.0)
    if kind == "masking":
        return x.masked_fill(u < level, 0.0)
    salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
    return torch.where(u < level, salt.to(x.dtype), x)


# Views of images for consistency training (FixMatch, Sohn et al. 2020, sec. 2.3): a weak view shifts the image by
# up to 2/28 of its size (2 px on MNIST); a strong one also rotates it by up to 20 degrees and scales it by up to
# 15 %, shifted by up to 3/28 (bench/README.md, few labels: these settings as chosen, not tuned or ablated), then,
# as FixMatch's strong views always end, blanks a square (Cutout, DeVries & Taylor 2017) of 11/28 of the side
# (11 px on MNIST; half-side STRONG_CUTOUT) at a random centre (one 100-label MNIST draw: 3.53 -> 2.80 % error;
# bench/results/few_labels_mnist_ablation.json).
WEAK_VIEW = {"rotation": 0.0, "scale": 0.0, "shift": 2 / 28}
STRONG_VIEW = {"rotation": 20.0, "scale": 0.15, "shift": 3 / 28}
STRONG_CUTOUT = 5 / 28


def cutout(x: torch.Tensor, half_side: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x (B, C, H, W) with, in each image, the pixels within round(half_side * H) rows and round(half_side * W)
    columns of a uniform random centre set to 0 (a square clipped at the border): (B, C, H, W)."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w, device=x.device)[None, None, :]  # (1, 1, W)
    cy = torch.randint(0, h, (b, 1, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), generator=generator, device=x.device)
    hole = ((rows - cy).abs() <= round(half_side * h)) & ((cols - cx).abs() <= round(half_side * w))  # (B, H, W)
    return x.masked_fill(hole[:, None], 0.0)


def random_affine(x: torch.Tensor, rotation: float, scale: float, shift: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of x (B, C, H, W) rotated by up to ``rotation`` degrees, scaled by a factor in 1 +- ``scale`` and
    shifted by up to ``shift`` of its width and height (uniform draws), bilinear, zeros outside: (B, C, H, W)."""
    b = len(x)

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
        return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1

    angle = uniform(b) * rotation * math.pi / 180
    zoom = 1 + uniform(b) * scale
    offset = uniform(b, 2) * shift * 2  # affine_grid's coordinates span [-1, 1]: a width is 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2): where each output pixel reads
    return F.grid_sample(x.float(), grid, align_corners=False).to(x.dtype)
