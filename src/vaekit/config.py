"""Frozen dataclass configs, saved as JSON into every run and every model file.

A run is reproducible from its ``config.json`` alone: ``RunConfig.from_dict(json.load(f))``.
Precedence when a run is configured: dataclass defaults < preset < explicit arguments.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from .errors import VaekitError


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared."""

    dataset: str = "digits"  # a data spec: digits, mnist, mnist:test, folder:PATH, npz:PATH, csv:PATH, ...
    data_dir: str | None = None  # searched before $VAEKIT_DATA and the cache
    binarize: str = "none"  # "none" or "dynamic" (a fresh Bernoulli draw of every pixel each batch)
    val_fraction: float = 0.1  # of the training split, for sources without an official validation split
    image_size: tuple[int, int] | None = None  # folder:PATH only: resize to (H, W); default: first image's size
    channels: int | None = None  # folder:PATH only: 1 (grayscale) or 3 (RGB); default: RGB if any image is colour
    noise: str | None = None  # train a denoiser: gaussian:SIGMA, masking:P or salt-pepper:P corrupts the input
    normal_class: int | None = None  # keep only this class in the training and validation splits


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``input_shape`` is filled in from the data when training starts."""

    model: str = "vae"
    input_shape: tuple[int, ...] = ()  # one item, e.g. (1, 28, 28) or (D,)
    hidden: tuple[int, ...] = (400,)  # encoder hidden widths; the decoder mirrors them
    latent_dim: int = 20
    likelihood: str = "auto"  # "bernoulli", "gaussian" (fixed sigma), "gaussian-learned", or "auto" from the data
    gaussian_sigma: float = 1.0  # the fixed sigma of "gaussian" (the starting value of "gaussian-learned")
    arch: str = "mlp"  # "mlp" or "conv" (images only)
    conv_channels: tuple[int, ...] = (32, 64)  # conv: channels of the stride-2 conv layers


LogKind = Literal["none", "tensorboard"]  # --log: where else the training curves go
LOG_CHOICES: tuple[str, ...] = get_args(LogKind)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation.

    ``epochs=None``: enough epochs for about ``min_steps`` steps (at least 10).
    ``batch_size``, ``lr``, ``lr_schedule`` left at ``None`` come from the architecture's recipe in
    ``DEFAULT_RECIPES``; its batch size halves (down to 128) until an epoch has 100 steps, and is capped at
    the size of the training split.
    """

    epochs: int | None = None
    min_steps: int = 3000
    batch_size: int | None = None
    optimizer: str = "adam"  # "adam" or "rmsprop"
    lr: float | None = None
    lr_schedule: str | None = None  # "constant", or "cosine": linear warm-up over warmup_epochs, cosine decay to 0
    warmup_epochs: float = 2.0
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    grad_clip: float | None = None  # clip the gradient's global norm to this value
    beta: float = 1.0  # weight of the KL term (beta-VAE); the logged loss stays the plain negative ELBO
    kl_warmup: float = 0.0  # epochs over which the KL weight ramps from 0 to beta
    free_bits: float = 0.0  # nats per latent dim below which the KL is not pushed down (0: off)
    iw_samples: int = 1  # K > 1 trains on the IWAE bound with K importance samples
    max_minutes: float | None = None  # wall-clock cap: an epoch starts only if one as long as the last fits
    patience: int | None = None  # early stopping: stop after this many epochs without a better validation loss
    precision: str = "auto"  # "fp32", "bf16" (autocast; losses in fp32), or "auto": bf16 where the hardware has it
    compile: bool = False  # torch.compile the training step (10-25% faster MNIST epochs after 2-25 s of compiling)
    log: LogKind = "none"  # also write RUN/tensorboard/ (curves, pictures, projector)

    def __post_init__(self) -> None:
        if self.log not in LOG_CHOICES:  # the one check, for flags, the Python API and config.json alike
            raise VaekitError(f"unknown --log {self.log!r}; choose from {', '.join(LOG_CHOICES)}")


# Training settings an architecture gets when batch_size, lr or lr_schedule are not given.
# mlp, measured on MNIST with the 784-400-20 VAE over 10 epochs (bench/README.md, speed suite): batch 512
# with a 2-epoch warm-up to 1.5e-2 and cosine decay reaches test loss 104.4-104.5 at ~0.4-0.5 s/epoch, where
# batch 128 at a constant 1e-3 (the PyTorch example) reaches 105.6 at ~0.9 s/epoch; batch 768 or 1024 ended at
# 105.9-107.9 for epochs only ~6 % shorter. Deeper MLPs did worse with it over 10 epochs (512-256-32: 108.4
# against 104.6); pass --batch-size 128 --lr 1e-3 --lr-schedule constant there.
# conv: the large-batch recipe diverged towards 128 nats in 4 epochs (a constant 1e-3 at batch 128 gave 103.6).
DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    "mlp": {"batch_size": 512, "lr": 1.5e-2, "lr_schedule": "cosine"},
    "conv": {"batch_size": 128, "lr": 1e-3, "lr_schedule": "constant"},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to reproduce a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return _from_dict(cls, d, "config")


# Presets that reproduce the seed articles; keys are "section.field".
PRESETS: dict[str, dict[str, Any]] = {
    # PyTorch examples, vae/main.py: 784-400-20, BCE + KLD, Adam 1e-3, batch 128, 10 epochs.
    "pytorch-example": {
        "model.hidden": (400,), "model.latent_dim": 20, "model.likelihood": "bernoulli",
        "train.optimizer": "adam", "train.lr": 1e-3, "train.batch_size": 128, "train.epochs": 10,
        "train.lr_schedule": "constant",
    },
    # The Keras blog's MLP VAE ("Building Autoencoders in Keras"): 784-256-2, RMSprop, batch 100, 50 epochs.
    "keras-blog": {
        "model.hidden": (256,), "model.latent_dim": 2, "model.likelihood": "bernoulli",
        "train.optimizer": "rmsprop", "train.lr": 1e-3, "train.batch_size": 100, "train.epochs": 50,
        "train.lr_schedule": "constant",
    },
}


def build_config(preset: str | None = None, **overrides: Any) -> RunConfig:
    """Make a ``RunConfig`` from a preset and ``section.field``-style or plain field overrides.

    ``overrides`` whose value is ``None`` are ignored, so CLI flags that were not given fall through.

    Examples
    --------
    >>> cfg = build_config("pytorch-example", dataset="mnist", epochs=2)
    >>> cfg.model.hidden, cfg.train.epochs
    ((400,), 2)
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise VaekitError(f"unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
        values.update(PRESETS[preset])
    for key, value in overrides.items():
        if value is not None:
            values[_qualify(key)] = value
    sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for key, value in values.items():
        section, name = key.split(".", 1)
        sections[section][name] = value
    cfg = RunConfig(preset=preset)
    return RunConfig(
        data=_replace_checked(cfg.data, sections["data"]),
        model=_replace_checked(cfg.model, sections["model"]),
        train=_replace_checked(cfg.train, sections["train"]),
        preset=preset,
    )


def _qualify(key: str) -> str:
    if "." in key:
        return key
    owners = [s for s, c in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
              if key in {f.name for f in fields(c)}]
    if len(owners) != 1:
        raise VaekitError(f"unknown setting {key!r}")
    return f"{owners[0]}.{key}"


def _replace_checked(obj: Any, changes: dict[str, Any]) -> Any:
    names = {f.name for f in fields(obj)}
    unknown = set(changes) - names
    if unknown:
        raise VaekitError(f"unknown setting(s) {sorted(unknown)} for {type(obj).__name__}")
    return replace(obj, **changes)


def _from_dict(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise VaekitError(f"{where}: expected an object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise VaekitError(f"{where}: unknown key(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)  # JSON has no tuples
        else:
            kwargs[name] = value
    return cls(**kwargs)
