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


# Allowed values, declared once: the CLI's choices and help and the one validation (``_check_choices``) read them.
Binarize = Literal["none", "dynamic"]
Likelihood = Literal["auto", "bernoulli", "bernoulli-autoregressive", "gaussian", "gaussian-learned"]
Arch = Literal["mlp", "conv"]
AutoregressiveOrder = Literal["rows", "columns"]  # --autoregressive-order: models/likelihoods.py
Optimizer = Literal["adam", "rmsprop"]
LrSchedule = Literal["constant", "cosine"]
Precision = Literal["auto", "fp32", "bf16"]
CompileMode = Literal["default", "reduce-overhead"]  # --compile-mode: torch.compile's mode (training.py)
LogKind = Literal["none", "tensorboard"]  # --log: where else the training curves go
SpikeAction = Literal["warn", "rollback"]  # --on-spike: training.py
DecayScope = Literal["all", "weights"]  # --weight-decay-scope: training.make_optimizer
PriorKind = Literal["normal", "mog", "vamp"]  # --prior: models/priors.py
Validation = Literal["hold-out", "train"]  # --validation: what the validation split is for
Stream = Literal["auto", "on", "off"]  # --stream: read npy/parquet files a batch at a time instead of loading them


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A config field with its help text (the CLI's ``--help``); ``cli`` holds CLI-only hints: ``parse`` (a
    parser name in cli.py), ``aliases``, ``choices`` (for non-Literal fields) or ``flag=False`` (not a flag)."""
    return field(default=default, metadata={"help": help, **cli})


def literal_choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type (or of ``Literal[...] | None``), else None."""
    if typing.get_origin(hint) is Literal:
        return get_args(hint)
    for arg in get_args(hint):
        if typing.get_origin(arg) is Literal:
            return get_args(arg)
    return None


def _check_choices(obj: Any) -> None:
    """Every ``Literal`` field holds one of its values: the one check, for flags, the Python API and
    config.json alike."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        choices = literal_choices(hints[f.name])
        value = getattr(obj, f.name)
        if choices is not None and value is not None and value not in choices:
            raise VaekitError(f"unknown --{f.name.replace('_', '-')} {value!r}; choose from "
                              f"{', '.join(map(str, choices))}")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared."""

    dataset: str = setting("digits", "data spec: digits (default), mnist, fashion-mnist, binarized-mnist, "
                                     "folder:PATH, npy:PATH, npz:PATH, csv:PATH, parquet:PATH")
    data_dir: str | None = setting(None, "folder with the dataset files (then $VAEKIT_DATA, then the cache)")
    binarize: Binarize = setting("none", "dynamic: a fresh Bernoulli draw of every pixel each batch (default none)")
    val_fraction: float = setting(0.1, "share of the training split held out for validation, for sources "
                                       "without an official one (default 0.1)")
    validation: Validation = setting("hold-out", "hold-out (default): the validation split picks the epoch whose "
                                                 "model is kept (and stops early under --patience); train: it "
                                                 "joins the training items and the last epoch's model is kept, "
                                                 "for a final fit once the settings are chosen")
    image_size: tuple[int, int] | None = setting(None, "folder data: resize images to N or HxW (default: the "
                                                       "first image's size)", parse="size")
    channels: int | None = setting(None, "folder data: 1 (grayscale) or 3 (RGB); default RGB if any image is "
                                         "colour", choices=(1, 3))
    noise: str | None = setting(None, "train a denoiser: gaussian:SIGMA, masking:P or salt-pepper:P corrupts "
                                      "the input")
    normal_class: int | None = setting(None, "train on this class only (anomaly detection)")
    labels: int | None = setting(None, "keep N labels of the training split, spread evenly over its classes; the "
                                       "rest are used unlabelled (--model m2 learns from them; every labelled run "
                                       "reports linear and 5-NN probes of its codes from them)")
    labels_seed: int = setting(0, "which items keep their labels under --labels (a seeded draw; default 0)")
    stream: Stream = setting("auto", "npy:PATH, parquet:PATH and folder:PATH data: on reads the items a batch at "
                                     "a time (bounded memory), off loads them; auto (default) streams data larger "
                                     "than a quarter of the available memory")
    workers: int | None = setting(None, "streamed data: processes that read (decode) training batches ahead; 0: "
                                        "a thread of the training process (default: 2 for image folders, 0 for "
                                        "npy and parquet files, which a thread reads faster)")

    def __post_init__(self) -> None:
        _check_choices(self)


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``input_shape`` is filled in from the data when training starts."""

    model: str = setting("vae", "vae (default), ae (plain autoencoder) or m2 (semi-supervised VAE: needs "
                                "labels, see --labels)", choices="models")  # models.MODELS
    input_shape: tuple[int, ...] = setting((), "one item, e.g. (1, 28, 28) or (D,)", flag=False)
    hidden: tuple[int, ...] = setting((400,), "encoder hidden widths, e.g. 400 or 512,256; the decoder mirrors "
                                              "them (default 400)")
    latent_dim: int = setting(20, "size of the latent code z (default 20)")
    likelihood: Likelihood = setting("auto", "p(x|z): bernoulli, bernoulli-autoregressive (each value also "
                                             "conditioned on the values before it: a masked linear layer under the "
                                             "decoder), gaussian (fixed sigma), gaussian-learned, or auto "
                                             "(bernoulli for data in [0, 1], else gaussian)")
    autoregressive_hidden: int = setting(0, "bernoulli-autoregressive: hidden units of the masked layer that reads "
                                            "the values before each one (MADE's); 0 (default): a linear layer only")
    autoregressive_window: int = setting(0, "bernoulli-autoregressive: image rows above each value that its masked "
                                            "linear layer reads (and the values left of it in its own row; in the "
                                            "colour planes before its own, the rows within that many of its own); "
                                            "0 (default): every value before it")
    autoregressive_units: int = setting(0, "bernoulli-autoregressive with a window: nonlinear units per value, "
                                           "each reading the decoder's logit and a masked convolution of the "
                                           "values within the window (weights shared across positions); 0 "
                                           "(default): none")
    autoregressive_order: AutoregressiveOrder = setting(
        "rows", "bernoulli-autoregressive on images: the order the values condition on each other, rows (default: "
                "raster order, each row left to right, top to bottom) or columns (each column top to bottom, left to "
                "right: the image transposed); a window then counts columns")
    gaussian_sigma: float = setting(1.0, "fixed sigma of the gaussian likelihood (the start of gaussian-learned; "
                                         "default 1)")
    arch: Arch = setting("mlp", "mlp (default) or conv (images)")
    conv_channels: tuple[int, ...] = setting((32, 64), "conv channels of the stride-2 layers, e.g. 32,64")
    classifier_arch: Arch | None = setting(None, "m2: the network of the classifier q(y|x), mlp or conv "
                                                 "(default: --arch); a conv classifier beside an mlp VAE costs "
                                                 "one conv net, not K conv decoders per item")
    n_classes: int = setting(0, "classes of a semi-supervised model, from its labels", flag=False)
    prior: PriorKind = setting("normal", "p(z) of a VAE or m2: normal (N(0, I), default), mog (a learned mixture of "
                                         "Gaussians) or vamp (the VampPrior, Tomczak & Welling 2018)")
    prior_components: int = setting(500, "components of the mog prior, pseudo-inputs of the vamp prior "
                                         "(default 500, the VampPrior paper's)")
    hierarchy: tuple[int, ...] = setting((), "a hierarchical VAE: sizes of the stochastic layers below the code, "
                                             "from the data up, e.g. 40 (two layers: z1 of 40 under the code z2); "
                                             "default none (one layer)")
    dropout: float = setting(0.0, "dropout on the hidden units of the generative networks (the decoder and each "
                                  "p(z_l | z_l+1)) while training, a regulariser against overfitting (default 0)")

    def __post_init__(self) -> None:
        _check_choices(self)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation.

    ``epochs=None``: enough epochs for about ``min_steps`` steps (at least 10).
    ``batch_size``, ``lr``, ``lr_schedule`` left at ``None`` come from the architecture's recipe in
    ``DEFAULT_RECIPES``; its batch size halves (down to 128) until an epoch has 100 steps, and is capped at
    the size of the training split.
    """

    epochs: int | None = setting(None, "passes over the training split (default: enough for about "
                                       "--min-steps optimiser steps, at least 10)")
    min_steps: int = setting(3000, "optimiser steps the default --epochs aims at (default 3000)")
    batch_size: int | None = setting(None, "global batch (default: the architecture's recipe; mlp 512, conv 128)")
    optimizer: Optimizer = setting("adam", "adam (default) or rmsprop")
    lr: float | None = setting(None, "learning rate (default: the architecture's recipe; mlp 1.5e-2, conv 1e-3)")
    weight_decay: float = setting(0.0, "weight decay: each step shrinks the weights by lr x this, decoupled from "
                                       "the gradient's moments (AdamW, Loshchilov & Hutter 2019); an L2 penalty "
                                       "under rmsprop (default 0: off)")
    weight_decay_scope: DecayScope = setting("all", "what --weight-decay shrinks: all (default) every parameter; "
                                                    "weights the networks' weight matrices only, not their biases "
                                                    "nor a learned prior's parameters (the VampPrior's "
                                                    "pseudo-inputs)")
    weight_average: float = setting(0.0, "Polyak averaging: validate, keep and test an exponential moving average "
                                         "of the weights, each step weighing the new ones by 1 - this (e.g. "
                                         "0.999; default 0: off)")
    lr_schedule: LrSchedule | None = setting(None, "cosine: linear warm-up over --warmup-epochs, then cosine "
                                                   "decay to 0 (default: mlp cosine, conv constant)")
    warmup_epochs: float = setting(2.0, "epochs of linear lr warm-up of the cosine schedule (default 2)")
    seed: int = setting(0, "seed of the weights, batches and sampled z (default 0)")
    device: str = setting("auto", "auto (default: CUDA when present), cpu, cuda, cuda:1")
    grad_clip: float | None = setting(None, "clip the gradient's global norm to this value")
    beta: float = setting(1.0, "KL weight (beta-VAE); the logged loss stays the plain negative ELBO (default 1)")
    kl_warmup: float = setting(0.0, "epochs to ramp the KL weight from 0 to beta")
    free_bits: float = setting(0.0, "nats per latent dim the KL may keep for free (0: off)")
    iw_samples: int = setting(1, "train on the IWAE bound with K > 1 importance samples")
    iw_from: float = setting(0.0, "with --iw-samples K > 1: train on the ELBO (its --beta, --kl-warmup, "
                                  "--free-bits) for this fraction of the planned run (after the lr warm-up), then "
                                  "on the IWAE bound (default 0: the bound from the start)")
    alpha: float | None = setting(None, "m2: weight of the labelled items' classification loss (default 0.1 x "
                                        "unlabelled / labelled items, as in Kingma et al. 2014)")
    consistency: float = setting(0.0, "m2 on images: weight, in units of --alpha, of the consistency between "
                                      "augmented views of each item's class (FixMatch, Sohn et al. 2020): a strongly "
                                      "augmented view learns the item's label, or an unlabelled item's class under a "
                                      "weakly augmented view where q(y|x) is confident (0: off, the default)")
    consistency_threshold: float = setting(0.95, "m2: the confidence q(y|x) of a weak view that makes its class a "
                                                 "target under --consistency (default 0.95)")
    on_spike: SpikeAction = setting("warn", "what an epoch whose training loss jumps by more than half does: warn "
                                            "(default), or rollback: restore the weights and optimiser state of the "
                                            "epoch before, halve the lr for the rest of the run and train the epoch "
                                            "again (at most 3 times a run; a fourth spike is kept, with a warning); "
                                            "rollback also undoes a loss or weights gone NaN or inf, which otherwise "
                                            "stop the run")
    max_minutes: float | None = setting(None, "wall-clock budget, a cap: an epoch starts only if one as long as "
                                              "the last still fits; a cosine lr schedule ends with the budget")
    checkpoint_minutes: float = setting(10.0, "also checkpoint inside an epoch once this many minutes have passed "
                                              "since the last checkpoint, so --resume goes on from that step (long "
                                              "or streamed epochs; default 10; 0: at epoch ends only)")
    patience: int | None = setting(None, "early stopping: stop after N epochs without a better validation loss "
                                         "(0: off, e.g. to override a preset's)", parse="count")
    precision: Precision = setting("auto", "bf16 autocast where the hardware has it (auto, the default) or plain "
                                           "fp32")
    compile: bool = setting(False, "torch.compile the training step (10-25%% faster MNIST epochs after 2-25 s "
                                   "of compiling)")
    compile_mode: CompileMode = setting("default", "torch.compile's mode under --compile: default, or "
                                                   "reduce-overhead (CUDA graphs: each step's kernels replayed with "
                                                   "one launch, for small models on a GPU; a CPU step is unchanged)")
    log: LogKind = setting("none", "tensorboard: also write RUN/tensorboard/ (under torchrun: --log-to)",
                           aliases=("--log-to",))

    def __post_init__(self) -> None:
        _check_choices(self)


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


# Tomczak & Welling 2018 ("VAE with a VampPrior"), their code's recipe: K = 500 pseudo-inputs, 300-300 hidden,
# 40 latent dims, Adam 5e-4 constant, batch 100, KL warm-up over 100 epochs, up to 2,000 epochs with early stopping
# after 50 without a better validation loss. ReLU where they have gated units (measured worse here); no weight
# normalisation and no clamp of the log-variances to [-6, 2] (both measured worse). Measured to help
# (bench/README.md, static binarized MNIST, 60 CPU minutes, test NLL): one layer 86.28 against 87.96 with Adam 1e-3,
# batch 128 and no warm-up; two layers 85.97 against 89.19.
VAMPPRIOR_RECIPE: dict[str, Any] = {
    "model.hidden": (300, 300), "model.latent_dim": 40, "model.likelihood": "bernoulli", "model.prior": "vamp",
    "model.prior_components": 500, "train.optimizer": "adam", "train.lr": 5e-4, "train.batch_size": 100,
    "train.lr_schedule": "constant", "train.kl_warmup": 100, "train.epochs": 2000, "train.patience": 50,
}
# the same with two stochastic layers of 40, the paper's HVAE (sec. 4): q(z2|x) q(z1|x, z2), p(z2) the VampPrior
HVAE_VAMPPRIOR_RECIPE: dict[str, Any] = {**VAMPPRIOR_RECIPE, "model.hierarchy": (40,)}
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
    "vampprior": VAMPPRIOR_RECIPE,
    "hvae-vampprior": HVAE_VAMPPRIOR_RECIPE,
    # vaekit's recipe for that HVAE in an hour of CPU (bench/README.md, dynamic binarized MNIST): batch 500, where the
    # 500 pseudo-inputs' pass through q(z2|x), once a step whatever the batch, is spread over 5x the paper's items;
    # lr 1.4e-3 with a 1-epoch warm-up and a cosine decay that ends with --max-minutes. No --compile here: it needs a
    # C++ compiler, which a fresh machine may lack (the benchmark's runs add it)
    "hvae-vampprior-b500": {**HVAE_VAMPPRIOR_RECIPE, "train.batch_size": 500, "train.lr": 1.4e-3,
                            "train.lr_schedule": "cosine", "train.warmup_epochs": 1},
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
