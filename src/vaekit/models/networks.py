"""Encoder and decoder networks: MLP (any item shape, flattened) or convolutional (images of any size).

Both map (B, *input_shape) -> (B, code_dim) and (B, L) -> (B, D) likelihood parameters, flattened, so the
models and likelihoods never care which architecture they run on.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import VaekitError


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Dense layers with a ReLU after each: sizes [a, b, c] -> Linear(a, b), ReLU, Linear(b, c), ReLU; with
    ``dropout`` > 0 a Dropout after each ReLU (only then: without it the layers' indices, hence the names in
    model files, stay those of files written before the setting existed)."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU(), *([nn.Dropout(dropout)] if dropout else [])]
    return nn.Sequential(*layers)


def conv_sizes(height: int, width: int, n_layers: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (kernel 4, padding 1 halves, rounding down): [(H, W), ...]."""
    sizes = [(height, width)]
    for _ in range(n_layers):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 convolutions with ReLU, then dense layers: (B, C, H, W) -> (B, code_dim)."""

    def __init__(self, cfg: ModelConfig, code_dim: int):
        super().__init__()
        c, h, w = cfg.input_shape
        sizes = conv_sizes(h, w, len(cfg.conv_channels))
        if min(sizes[-1]) < 1:
            raise VaekitError(f"images of {h}x{w} are too small for {len(cfg.conv_channels)} stride-2 conv layers; "
                              "use fewer --conv-channels")
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip((c, *cfg.conv_channels[:-1]), cfg.conv_channels):
            layers += [nn.Conv2d(fan_in, fan_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        flat = cfg.conv_channels[-1] * math.prod(sizes[-1])
        self.net = nn.Sequential(*layers, nn.Flatten(), mlp([flat, *cfg.hidden]),
                                 nn.Linear(cfg.hidden[-1], code_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Dense layers, then stride-2 transposed convolutions back to the encoder's sizes: (B, L) -> (B, C*H*W)."""

    def __init__(self, cfg: ModelConfig, out_channels: int):
        super().__init__()
        c, h, w = cfg.input_shape
        sizes = conv_sizes(h, w, len(cfg.conv_channels))
        self.start = (cfg.conv_channels[-1], *sizes[-1])  # (C_last, h, w)
        self.dense = nn.Sequential(mlp([cfg.latent_dim, *cfg.hidden[::-1], math.prod(self.start)], cfg.dropout))
        channels = (*cfg.conv_channels[::-1], out_channels)  # e.g. 64 -> 32 -> C
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(channels[:-1], channels[1:])):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            # (in - 1) * 2 - 2 + 4 + output_padding = 2 * in + output_padding: hit odd sizes exactly
            layers.append(nn.ConvTranspose2d(fan_in, fan_out, kernel_size=4, stride=2, padding=1,
                                             output_padding=(h_out - 2 * h_in, w_out - 2 * w_in)))
            if i < len(channels) - 2:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, *self.start)  # (B, C_last, h, w)
        return self.deconv(h).flatten(1)  # (B, C*H*W)


class MLPEncoder(nn.Sequential):
    def __init__(self, cfg: ModelConfig, code_dim: int):
        super().__init__(nn.Flatten(), mlp([math.prod(cfg.input_shape), *cfg.hidden]),
                         nn.Linear(cfg.hidden[-1], code_dim))


class MLPDecoder(nn.Sequential):
    def __init__(self, cfg: ModelConfig, out_channels: int):
        super().__init__(mlp([cfg.latent_dim, *cfg.hidden[::-1]], cfg.dropout),
                         nn.Linear(cfg.hidden[0], math.prod(cfg.input_shape)))


ARCHS = {"mlp": (MLPEncoder, MLPDecoder), "conv": (ConvEncoder, ConvDecoder)}


def build_networks(cfg: ModelConfig, code_dim: int, decoder_dim: int | None = None) -> tuple[nn.Module, nn.Module]:
    """(encoder (B, *input_shape) -> (B, code_dim), decoder (B, decoder_dim) -> (B, D)) for the config's
    architecture; ``decoder_dim`` defaults to ``latent_dim``."""
    if cfg.arch not in ARCHS:
        raise VaekitError(f"unknown architecture {cfg.arch!r}; choose from {', '.join(ARCHS)}")
    if cfg.arch == "conv" and len(cfg.input_shape) != 3:
        raise VaekitError(f"--arch conv needs images (C, H, W); the data items have shape {tuple(cfg.input_shape)}")
    encoder_cls, decoder_cls = ARCHS[cfg.arch]
    channels = cfg.input_shape[0] if len(cfg.input_shape) == 3 else 1
    decoder_cfg = cfg if decoder_dim is None else replace(cfg, latent_dim=decoder_dim)
    return encoder_cls(cfg, code_dim), decoder_cls(decoder_cfg, channels)
