"""Corruptions for denoising: ``gaussian:SIGMA``, ``masking:P``, ``salt-pepper:P`` on items in [0, 1]."""
from __future__ import annotations

import torch

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
