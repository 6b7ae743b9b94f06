"""The training loop: batches from in-memory tensors, optimiser, progress, metrics, checkpoints, resume.

Data lives on the device as one tensor (uint8 where the source is uint8) and is batched by index,
never one Python object per sample. Per-batch host work is kept out of the loop: losses are summed
on the device and read back only when the progress bar is refreshed.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed, runs, tracking
from .config import DEFAULT_RECIPES, RunConfig
from .data import Splits, load_splits
from .data.transforms import corrupt, parse_noise
from .errors import DataError, VaekitError
from .models import MODELS, UNIT_INTERVAL, build_model
from .anomaly import training_scores
from .latent import class_predictions
from .objectives import Schedule, cosine_factor, kl_weight
from .tensors import (FileTensor, as_tensor, autocast_dtype, gather, model_input, pick_device, select_rows,
                      shuffle_plan)

TERMS = ("loss", "recon", "kl")
MIN_DEFAULT_BATCH, MIN_STEPS_PER_EPOCH = 128, 100  # a recipe's batch halves down to 128 on small data
PROGRESS_EVERY = 25  # steps between progress-bar refreshes (each one is a device sync)
MAX_ROLLBACKS = 3  # --on-spike rollback: a run that keeps spiking at 1/8 of its lr needs another remedy
FEW_STEPS = 500  # fewer optimiser steps than this leave an MLP VAE's samples a flat blur on MNIST-like data
# a budgeted run resumed where its cosine had brought the lr below this share of its peak had in effect finished
# its decay (the budget ends it at the planned end or an epoch or two before, at ~0-3 % of the peak): continuing
# it would spend the new budget at lr ~0, so the resume re-plans one cosine over the whole run instead
DECAY_ENDED_LR = 0.05


class TrainingDiverged(VaekitError):
    """The loss or a gradient became NaN or infinite; ``loss``: the epoch's running loss when it was seen."""

    def __init__(self, message: str, loss: float = math.nan):
        super().__init__(message)
        self.loss = loss


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what the run folder kept and how to go on."""


def interrupted_message(run_dir: Path) -> str:
    checkpoint = run_dir / runs.CHECKPOINT_FILE
    if checkpoint.is_file():
        metadata = runs.read_safetensors(checkpoint)[1]
        epoch, step = int(metadata.get("epoch", 0)), int(metadata.get("step", "0"))
        where = f"step {step} of epoch {epoch + 1}" if step else f"epoch {epoch}"
        return (f"interrupted; {run_dir} keeps the checkpoint of {where} (and the model of its best epoch); "
                f"continue with: vaekit train --resume {run_dir}")
    if run_dir.is_dir():
        return (f"interrupted before the first epoch ended; {run_dir} holds no checkpoint, only the run's config; "
                "run the same command again to start over")
    return "interrupted before training started; nothing was written"


@dataclass
class TrainResult:
    run_dir: Path
    model: torch.nn.Module
    config: RunConfig
    metrics: list[dict]
    test: dict[str, float]
    train_scores: dict[str, np.ndarray]  # anomaly score -> scores of (up to 10,000) training items
    test_accuracy: float | None = None  # a model of labels: its classifier's accuracy on the test split


def resolve_config(cfg: RunConfig, splits: Splits) -> RunConfig:
    """Fill in what the data decides: input shape, likelihood ("auto"), number of epochs (None), and the
    architecture's recipe for a batch size, learning rate and schedule left at None."""
    train = splits.train
    likelihood = cfg.model.likelihood
    if likelihood == "auto":
        in_unit = train.x.dtype == np.uint8 or (train.x.min() >= 0 and train.x.max() <= 1)
        likelihood = "bernoulli" if in_unit else "gaussian"
    t = cfg.train
    if t.beta < 0 or t.kl_warmup < 0 or t.free_bits < 0 or t.iw_samples < 1:
        raise VaekitError(f"beta, kl_warmup and free_bits must be >= 0 and iw_samples >= 1; got beta {t.beta}, "
                          f"kl_warmup {t.kl_warmup}, free_bits {t.free_bits}, iw_samples {t.iw_samples}")
    if t.patience is not None and t.patience < 0:
        raise VaekitError(f"--patience must be >= 0 epochs (0: off), got {t.patience}")
    if t.max_minutes is not None and not t.max_minutes > 0:  # a budget of 0 would train nothing and save no model
        raise VaekitError(f"--max-minutes must be > 0, got {t.max_minutes:g}")
    if cfg.data.workers is not None and cfg.data.workers < 0:
        raise VaekitError(f"--workers must be >= 0, got {cfg.data.workers}")
    if not t.checkpoint_minutes >= 0:
        raise VaekitError(f"--checkpoint-minutes must be >= 0, got {t.checkpoint_minutes:g}")
    if t.compile_mode != "default" and not t.compile:
        raise VaekitError(f"--compile-mode {t.compile_mode} is a mode of --compile: add --compile")
    if t.grad_clip is not None and t.grad_clip <= 0:
        raise VaekitError(f"--grad-clip must be > 0, got {t.grad_clip}")
    if not t.weight_decay >= 0:
        raise VaekitError(f"--weight-decay must be >= 0, got {t.weight_decay:g}")
    if not 0 <= t.weight_average < 1:
        raise VaekitError(f"--weight-average must be in [0, 1), got {t.weight_average:g}")
    if not 0 <= cfg.model.dropout < 1:
        raise VaekitError(f"--dropout must be in [0, 1), got {cfg.model.dropout:g}")
    if cfg.model.gaussian_sigma <= 0:
        raise VaekitError(f"--gaussian-sigma must be > 0, got {cfg.model.gaussian_sigma}")
    if not 0 <= t.iw_from < 1:
        raise VaekitError(f"--iw-from must be in [0, 1), a fraction of the planned run; got {t.iw_from:g}")
    if t.iw_from and t.iw_samples < 2:
        raise VaekitError("--iw-from says when training turns to the IWAE bound: add --iw-samples K (K > 1)")
    if t.iw_samples > 1 and not t.iw_from and (t.beta != 1 or t.free_bits or t.kl_warmup):
        raise VaekitError("--iw-samples trains on the IWAE bound; it does not combine with --beta, --free-bits "
                          "or --kl-warmup, unless --iw-from leaves them an ELBO phase first")
    if cfg.data.binarize == "dynamic" and likelihood not in UNIT_INTERVAL:
        raise VaekitError(f"--binarize dynamic needs data in [0, 1]; {train.name} is real-valued")
    recipe = DEFAULT_RECIPES.get(cfg.model.arch, DEFAULT_RECIPES["mlp"])
    lr = recipe["lr"] if t.lr is None else t.lr
    lr_schedule = recipe["lr_schedule"] if t.lr_schedule is None else t.lr_schedule
    if lr <= 0 or t.warmup_epochs < 0:  # lr_schedule's values are checked where it is declared (config.py)
        raise VaekitError(f"lr must be > 0 and warmup_epochs >= 0; got {lr}, {t.warmup_epochs}")
    if not MODELS[cfg.model.model].variational and (t.iw_samples > 1 or t.beta != 1 or t.free_bits or t.kl_warmup):
        raise VaekitError(f"beta, --kl-warmup, --free-bits and --iw-samples apply to a VAE, not --model "
                          f"{cfg.model.model}")
    if t.consistency and not MODELS[cfg.model.model].uses_labels:
        raise VaekitError(f"--consistency trains a classifier from labels; it applies to --model m2, not "
                          f"{cfg.model.model}")
    if cfg.data.noise:
        parse_noise(cfg.data.noise)
        if likelihood not in UNIT_INTERVAL:
            raise VaekitError(f"--noise corrupts items in [0, 1]; {train.name} is real-valued ({likelihood} likelihood)")
    if cfg.model.classifier_arch is not None and not MODELS[cfg.model.model].uses_labels:
        raise VaekitError(f"--classifier-arch is the network of m2's classifier; --model {cfg.model.model} has none")
    for flag, arch in (("--arch", cfg.model.arch), ("--classifier-arch", cfg.model.classifier_arch)):
        if arch == "conv" and not train.is_image:
            raise DataError(f"{train.name}: {flag} conv needs images (C, H, W); items have shape {train.item_shape}")
    if likelihood in UNIT_INTERVAL and train.x.dtype != np.uint8 and (train.x.min() < 0 or train.x.max() > 1):
        raise DataError(f"{train.name}: values lie in [{train.x.min():.3g}, {train.x.max():.3g}], outside the "
                        "Bernoulli likelihood's [0, 1]; use --likelihood gaussian or rescale the data")
    batch_size = cfg.train.batch_size
    if batch_size is None:
        batch_size = recipe["batch_size"]
        while batch_size > MIN_DEFAULT_BATCH and len(train) / batch_size < MIN_STEPS_PER_EPOCH:
            batch_size //= 2  # small data: keep ~100 steps an epoch, so "epochs" means the same amount of training
        batch_size = min(batch_size, len(train))
    if batch_size < 1:
        raise VaekitError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > len(train):
        raise VaekitError(f"batch size {batch_size} is larger than the training split "
                          f"of {train.name} ({len(train)} items)")
    n_classes, alpha = cfg.model.n_classes, t.alpha
    if MODELS[cfg.model.model].uses_labels:
        known = train.y >= 0 if train.y is not None else np.zeros(len(train), dtype=bool)
        if train.y is None or len(np.unique(train.y[known])) < 2:
            raise DataError(f"{train.name}: --model {cfg.model.model} learns a classifier from labels of at least 2 "
                            "classes, and these training items have fewer (use a labelled dataset, with --labels N "
                            "to keep N of them, and no --normal-class)")
        if t.iw_samples > 1 or t.free_bits:
            raise VaekitError(f"--iw-samples and --free-bits are not implemented for --model {cfg.model.model}")
        if t.compile:  # its batches split into labelled and unlabelled items of changing sizes: one graph per split
            raise VaekitError(f"--compile does not apply to --model {cfg.model.model}: its labelled/unlabelled split "
                              "changes shape every batch, so the step would recompile; train without --compile")
        if alpha is not None and not alpha > 0:  # 0 would leave the classifier untrained
            raise VaekitError(f"--alpha must be > 0, got {alpha:g}")
        if t.consistency:
            if not t.consistency > 0 or not 0 <= t.consistency_threshold <= 1:
                raise VaekitError(f"--consistency must be >= 0 and --consistency-threshold in [0, 1], got "
                                  f"{t.consistency:g} and {t.consistency_threshold:g}")
            if not train.is_image:  # its views are shifted, rotated and scaled images
                raise DataError(f"{train.name}: --consistency compares augmented views of images (C, H, W); items "
                                f"have shape {train.item_shape}")
        n_classes = int(train.y[known].max()) + 1
        if alpha is None:  # Kingma et al. 2014, sec. 4.2: alpha = 0.1 N, in batch means per unlabelled/labelled
            alpha = 0.1 * max(1, int((~known).sum())) / int(known.sum())
    epochs = cfg.train.epochs
    if epochs is None:
        rows = epoch_rows(len(train), train.y if MODELS[cfg.model.model].uses_labels else None)
        steps_per_epoch = math.ceil(rows / batch_size)
        epochs = max(10, math.ceil(cfg.train.min_steps / steps_per_epoch))
    if epochs < 1:
        raise VaekitError(f"epochs must be at least 1, got {epochs}")
    return replace(cfg, model=replace(cfg.model, input_shape=train.item_shape, likelihood=likelihood,
                                      n_classes=n_classes),
                   train=replace(cfg.train, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                                 alpha=alpha))


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile's default backend can build kernels here: a C++ compiler on CPU, Triton on CUDA."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        return has_triton()
    return device.type == "cpu" and any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++"))


def check_compile(device: torch.device) -> None:
    """--compile needs a backend that can build kernels here; say so before training starts."""
    if not compiler_available(device):
        raise VaekitError(f"--compile needs {'Triton' if device.type == 'cuda' else 'a C++ compiler (g++)'} "
                          f"on {device.type}; train without --compile")


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The run's optimiser; with --weight-average, each of its steps also updates the weights' average
    (``WeightAverage``)."""
    params, t = list(model.parameters()), cfg.train
    if t.weight_decay and t.weight_decay_scope == "weights":  # two groups: the weight matrices, the rest undecayed
        decayed = {id(p) for p in model.weight_matrices()}
        params = [{"params": [p for p in params if id(p) in decayed]},
                  {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]
    if t.optimizer == "adam":
        # fused Adam does the whole update in one kernel: ~1.4x faster epochs on CPU at batch 128. AdamW with no
        # decay is Adam; plain Adam stays the class of the undecayed runs whose figures the benchmarks hold
        adam = torch.optim.AdamW if t.weight_decay else torch.optim.Adam
        optimizer = adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    elif t.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=t.lr, alpha=0.9, eps=1e-7,  # Keras' defaults
                                        weight_decay=t.weight_decay)
    else:
        raise VaekitError(f"unknown optimizer {cfg.train.optimizer!r}; choose adam or rmsprop")
    if t.weight_average:
        WeightAverage(optimizer, t.weight_average)
    return optimizer


class WeightAverage:
    """Polyak averaging (Polyak & Juditsky 1992) as an exponential moving average of the weights, updated after
    every optimiser step: avg <- avg + (1 - d_t) (w - avg), with d_t = min(decay, (1 + t) / (10 + t)) after t
    updates, so the first steps' weights are not averaged in for long (TensorFlow's ExponentialMovingAverage).
    The average lives in the optimiser's state, slot "average" of each parameter (and the count in the first
    one's slot "average_steps"), so checkpoints keep it and a resume continues it. ``applied`` swaps it into the
    model: validation, the model file and the test read the average; training steps the raw weights."""

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float):
        self.optimizer, self.decay = optimizer, decay
        self._steps: int | None = None  # updates so far, once read from the state
        optimizer.register_step_post_hook(lambda *_: self.update())
        optimizer.weight_average = self  # found by ``applied_average``

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @torch.no_grad()
    def update(self) -> None:
        params = self._params()
        states = [self.optimizer.state[p] for p in params]
        if "average" not in states[0]:  # the first step: the average starts at the weights
            for p, state in zip(params, states):
                state["average"] = p.detach().clone()
            states[0]["average_steps"] = torch.zeros((), dtype=torch.float32)
        if self._steps is None:  # this process's first update (a resume's too): the count, read once (a GPU sync)
            self._steps = int(states[0]["average_steps"])
        decay = min(self.decay, (1 + self._steps) / (10 + self._steps))
        torch._foreach_lerp_([s["average"] for s in states], [p.detach() for p in params], 1 - decay)
        self._steps += 1
        states[0]["average_steps"].fill_(self._steps)  # for the checkpoint

    def state_restored(self) -> None:
        """The optimiser's state was loaded again (a rollback): the update count is read from it at the next step."""
        self._steps = None

    @contextlib.contextmanager
    def applied(self):
        """The model holds the average inside the block (the raw weights before the first step) and its raw
        weights again after it."""
        state = self.optimizer.state
        pairs = [(p, state[p]["average"]) for p in self._params() if "average" in state[p]]
        self._swap(pairs)
        try:
            yield
        finally:
            self._swap(pairs)

    @staticmethod
    @torch.no_grad()
    def _swap(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for p, average in pairs:
            raw = p.detach().clone()
            p.copy_(average)
            average.copy_(raw)


def applied_average(optimizer: torch.optim.Optimizer) -> contextlib.AbstractContextManager:
    """``WeightAverage.applied`` of the optimiser's average, or a block that changes nothing without one."""
    average = getattr(optimizer, "weight_average", None)
    return contextlib.nullcontext() if average is None else average.applied()


def shuffled_batches(n: int, batch_size: int, seed: int, device: torch.device | str = "cpu", block: int = 1,
                     window: int = 1) -> Iterator[torch.Tensor]:
    """Index batches (B,) over ``n`` items in an order fixed by ``seed`` (so a resumed epoch sees the same order).

    ``block`` = 1: a permutation of the items. ``block`` > 1, for streamed files of small rows, where a read per row
    would cost more than the training step: blocks of ``block`` consecutive items in a random order, then the items
    shuffled again within each window of ``window`` batches, which the reader takes in one pass (a read per block).
    Every batch still draws its items from about B blocks spread over the whole file, as a shuffle buffer does
    (tf.data's, WebDataset's), with memory bounded by the window, not the file.

    The caller gathers each batch with one ``index_select``: on MNIST 2.5 ms an epoch, where gathering the whole
    split with ``x[order]`` took 17 ms (advanced indexing, and a fresh 42 MB copy every epoch).
    """
    generator = torch.Generator().manual_seed(seed)
    if block == 1:
        order = torch.randperm(n, generator=generator)
    else:
        blocks = torch.randperm(-(-n // block), generator=generator)  # (ceil(n / block),)
        order = (blocks[:, None] * block + torch.arange(block)).flatten()
        order = order[order < n]  # the last block may be short
        order = torch.cat([part[torch.randperm(len(part), generator=generator)]
                           for part in order.split(window * batch_size)])
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def evaluate_terms(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000, seed: int = 0,
                   binarize: str = "none", noise: str | None = None, autocast: torch.dtype | None = None
                   ) -> dict[str, float]:
    """Mean per-sample loss, reconstruction and KL over ``x`` (N, ...), one seeded z per item.

    With ``noise``, the input is corrupted (seeded) and the clean items are the target. With ``autocast``
    (bf16), the network runs in it, as in training; the terms are summed in fp32/fp64 either way.
    """
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(len(TERMS), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch_size):
        clean = model_input(x[start:start + batch_size], binarize, gen)
        noisy = corrupt(clean, noise, gen) if noise else clean
        with torch.autocast(x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            terms = model.loss(noisy, gen, target=clean)
        sums += torch.stack([terms[k].sum() for k in TERMS]).double()
    return dict(zip(TERMS, (sums / max(len(x), 1)).tolist()))


class Objective(torch.nn.Module):
    """The training objective as a module, so DistributedDataParallel can wrap it and sync gradients.

    ``bound`` False: the ELBO phase of a run whose --iw-from delays the IWAE bound (the model's objective then sees
    one importance sample); a compiled step builds one graph for each phase."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.elbo_cfg = replace(cfg.train, iw_samples=1)

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor, weight: torch.Tensor,
                labels: torch.Tensor | None = None, bound: bool = True):
        return self.model.objective(noisy, clean, self.cfg.train if bound else self.elbo_cfg, weight, labels)


def train(cfg: RunConfig, run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, splits: Splits | None = None, files: bool = True) -> TrainResult:
    """Train the model a config describes and write its run folder.

    ``files=False`` trains in memory (the estimators' ``fit``): no run folder, no checkpoints; the result's
    ``run_dir`` is None, its metrics are kept in memory and its model has the best epoch's weights.

    With ``resume=True``, training continues in ``run_dir`` from its last checkpoint (from scratch if
    it was stopped before the first one) up to ``cfg.train.epochs``. Under torchrun, each rank trains on
    its share of every global batch (DistributedDataParallel); only rank 0 writes the run folder.
    """
    splits = splits or load_splits(cfg.data)
    cfg = resolve_config(cfg, splits)
    if not files and (resume or cfg.train.log != "none"):
        raise VaekitError("resume and --log need a run folder; they do not combine with training in memory")
    run_dir = Path(run_dir or default_run_dir(cfg)) if files else None
    rank, size, local_rank = distributed.world()
    device = pick_device(cfg.train.device, local_rank)
    if cfg.train.compile:
        check_compile(device)  # before the run folder exists: a refused run leaves nothing behind
    tracking.check(cfg)  # likewise --log tensorboard without its package
    created = distributed.start(device)
    try:
        return _train(cfg, run_dir, splits, device, resume, overwrite, progress and rank == 0)
    except KeyboardInterrupt:  # the background writer has finished: the message says what is on disk
        if run_dir is None:
            raise
        raise TrainingInterrupted(interrupted_message(run_dir)) from None
    except DataError:  # e.g. a streamed image that no longer decodes, found in the first epoch
        if run_dir is not None and not resume and distributed.is_main():
            runs.remove_unstarted(run_dir)
        raise
    finally:
        distributed.stop(created)


class MemoryRecord:
    """What a run folder keeps, for training in memory: the metrics records and the best epoch's weights."""

    def __init__(self) -> None:
        self.metrics: list[dict] = []
        self.best_weights: dict[str, torch.Tensor] | None = None


def _train(cfg: RunConfig, run_dir: Path | None, splits: Splits, device: torch.device, resume: bool, overwrite: bool,
           progress: bool) -> TrainResult:
    model, optimizer, start_epoch, best, within, lr_scale = _prepare(cfg, run_dir, resume, overwrite, device)
    objective = Objective(model, cfg)
    if distributed.world()[1] > 1:
        objective = torch.nn.parallel.DistributedDataParallel(objective)
    if cfg.train.compile:
        # Measured on MNIST (784-400-20, batch 512, bf16): epochs 10-25% faster, after 2 s (cached) to 25 s of
        # compiling. dynamic=False: the short last batch gets its own static graph, every other step stays static.
        objective = torch.compile(objective, dynamic=False,
                                  mode=None if cfg.train.compile_mode == "default" else cfg.train.compile_mode)
    x_train, x_val = as_tensor(splits.train, device), as_tensor(splits.val, device)
    x_fit, y_fit = x_train, None  # what an epoch passes over
    if model.uses_labels:
        x_fit, y_fit = oversample_labelled(x_train, torch.as_tensor(splits.train.y, device=device))
    steps_per_epoch = math.ceil(len(x_fit) / cfg.train.batch_size)
    # A run folder's warning (the CLI and the run-folder API); fitting in memory reports n_iter_ and history_.
    if steps_per_epoch * cfg.train.epochs < FEW_STEPS and run_dir is not None and distributed.is_main():
        need = math.ceil(cfg.train.min_steps / steps_per_epoch)
        print(f"vaekit: warning: {cfg.train.epochs} epochs of {steps_per_epoch} steps make only "
              f"{steps_per_epoch * cfg.train.epochs} optimiser steps ({len(x_train)} training items, batch "
              f"{cfg.train.batch_size}); a model needs about {FEW_STEPS} or more to learn more than a blur: pass "
              f"--epochs {need}, or leave --epochs unset (about {cfg.train.min_steps} steps)", file=sys.stderr)
    bar = tqdm(total=steps_per_epoch * cfg.train.epochs,
               initial=steps_per_epoch * start_epoch + (within[0] if within else 0),
               desc=f"train {cfg.data.dataset}", unit="step", disable=not progress, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 15)  # a log file gets a line every 15 s
    # Tiny weights and gradients late in training become denormal floats, which x86 handles ~100x slower:
    # epochs grew from 1.1 s to 1.5 s on MNIST without this. Values below 1.2e-38 are flushed to zero.
    torch.set_flush_denormal(True)
    budget_ends = time.monotonic() + 60 * cfg.train.max_minutes if cfg.train.max_minutes else math.inf
    since_best = _epochs_since_best(run_dir) if start_epoch and distributed.is_main() else 0
    last_epoch_seconds = 0.0
    last_train_loss = None  # the previous epoch's (a resumed run's first epoch is not compared)
    # A resumed run's record (rank 0): its epoch times, for where a cosine lr schedule ends under a budget
    resumed_record = runs.read_metrics(run_dir) if start_epoch and run_dir is not None and distributed.is_main() else []
    epoch_seconds = [m.get("seconds", 0.0) for m in resumed_record]

    def schedule_end(epochs_done: int) -> float | None:
        """The epoch the lr schedule ends with: None for --epochs, or under a budget the epochs done plus those the
        time left holds at the median time of the last 5 epochs (at least the next one), if fewer. The median: a
        compiling first epoch or a resumed part of one does not move it. Rank 0's clock, so every rank sets the
        same lr. Without this, --max-minutes with many --epochs stopped while a cosine's lr was near its peak."""
        if not math.isfinite(budget_ends):
            return None
        end = math.inf
        if epoch_seconds:
            left = max(budget_ends - time.monotonic(), 0.0)
            end = epochs_done + max(1.0, left // max(float(np.median(epoch_seconds[-5:])), 1e-9))
        return distributed.broadcast(end if end < cfg.train.epochs else None)

    # a resumed budgeted run goes on from the lr decay's fraction its last epoch recorded (rank 0's, for every rank),
    # and any run with its checkpoint's lr scale (each --on-spike rollback halved it)
    recorded = (m.get("schedule") for m in resumed_record if m.get("epoch") == start_epoch)
    done_before = distributed.broadcast(next(recorded, None) if cfg.train.max_minutes else None)
    if (done_before is not None and cfg.train.lr_schedule == "cosine"
            and cosine_factor(done_before) < DECAY_ENDED_LR):
        # it ended with its budget: the new budget extends the run (as a larger --epochs does), the lr back at
        # the point of a cosine over all of it, --iw-from's switch with it. (A continued decay would train the
        # whole budget at lr ~0.)
        done_before = None
        if distributed.is_main():
            print(f"vaekit: note: {run_dir} had finished its learning-rate decay (epoch {start_epoch}); the new "
                  f"{cfg.train.max_minutes:g}-minute budget extends the run with one cosine over all of it",
                  file=sys.stderr)
    schedule = Schedule(cfg.train, schedule_end(start_epoch),
                        None if done_before is None else (float(start_epoch), done_before), lr_scale)
    rollbacks = round(-math.log2(lr_scale))  # --on-spike rollback: epochs trained again so far in the run
    writer = runs.BackgroundWriter()  # checkpoints go to disk while the next epoch trains
    memory = MemoryRecord() if run_dir is None else None
    logger = tracking.make_logger(cfg, run_dir, start_epoch)  # --log tensorboard (rank 0), else a no-op
    last_saved = time.monotonic()

    def save_within(epoch: int) -> Callable[[int, torch.Tensor], None]:
        """A checkpoint inside ``epoch`` once --checkpoint-minutes have passed since the last one (any kind)."""
        def save(step: int, sums: torch.Tensor) -> None:
            nonlocal last_saved
            if not distributed.broadcast(time.monotonic() - last_saved >= 60 * cfg.train.checkpoint_minutes):
                return  # every rank asks, so all ranks take the same (collective) path
            total = distributed.sum_across(sums.clone())  # the epoch's sums so far over all ranks
            if distributed.is_main():
                runs.save_checkpoint(run_dir / runs.CHECKPOINT_FILE, model, optimizer, cfg, epoch - 1,
                                     splits.standardizer, best, write=writer.write, within=(step, total),
                                     lr_scale=schedule.scale)
            last_saved = time.monotonic()
        return save

    try:
        epoch = start_epoch
        while epoch < cfg.train.epochs:
            epoch += 1
            # the budget is a cap: an epoch starts only if one as long as the last still fits
            if distributed.broadcast(time.monotonic() + last_epoch_seconds > budget_ends):  # all ranks stop together
                bar.write(f"stopping after epoch {epoch - 1}: the {cfg.train.max_minutes:g}-minute budget is spent")
                break
            # under --on-spike rollback, what a spike in this epoch goes back to (a first epoch's loss gone non-finite,
            # or weights gone so, go back to where it started). Not from inside an epoch a resume began in: the
            # snapshot would be mid-epoch, and the checkpoint written at a rollback is an epoch's end.
            resumed_inside = within is not None and epoch == start_epoch + 1
            rollback_possible = (cfg.train.on_spike == "rollback" and rollbacks < MAX_ROLLBACKS
                                 and not resumed_inside)  # alike on every rank
            before = _training_state(model, optimizer) if rollback_possible else None
            started, shown = time.perf_counter(), bar.n
            try:
                train_terms = train_epoch(objective, optimizer, x_fit, cfg, epoch, bar, y_fit,
                                          within if epoch == start_epoch + 1 else None,
                                          save_within(epoch) if run_dir and cfg.train.checkpoint_minutes else None,
                                          schedule)
            except TrainingDiverged as e:  # raised on every rank alike (the loss is summed across them)
                if before is None:  # nothing to go back to
                    kept = "" if run_dir is None else f"; {run_dir} keeps the checkpoint of epoch {epoch - 1}"
                    raise TrainingDiverged(f"{e}{kept}. Try a lower --lr (now {cfg.train.lr:g}), --grad-clip 1.0, "
                                           "or --precision fp32") from None
                train_terms = {"loss": e.loss}  # a loss gone NaN or inf is rolled back as a spike is
            # the same sums on every rank; the weights can go non-finite in the epoch's last steps behind a finite
            # loss (checked here only where a rollback can mend it: _end_epoch stops any other run)
            weights_finite = before is None or finite_weights(model)
            spiked = (not weights_finite or not math.isfinite(train_terms["loss"])
                      or loss_spiked(last_train_loss, train_terms["loss"]))
            if before is not None and distributed.broadcast(spiked):
                # back to the end of the epoch before, at half the lr (rank 0's decision, for every rank): the spike's
                # epoch writes no record and no model file
                _restore_training_state(model, optimizer, before)
                before = None
                schedule.scale /= 2
                rollbacks += 1
                failure = None
                if distributed.is_main():
                    _report_spike(cfg, run_dir, bar, epoch, last_train_loss, train_terms["loss"], len(x_val) > 0,
                                  rolled_back=(rollbacks, schedule.scale), weights_finite=weights_finite)
                    if run_dir is not None:  # the halved scale on disk, over any checkpoint written inside the spike
                        try:  # (one writer thread, in order: this lands after any queued write)
                            runs.save_checkpoint(run_dir / runs.CHECKPOINT_FILE, model, optimizer, cfg, epoch - 1,
                                                 splits.standardizer, best, write=writer.write,
                                                 lr_scale=schedule.scale)
                        except Exception as e:  # the other ranks must not wait for rank 0 forever
                            failure = e
                        last_saved = time.monotonic()
                message = distributed.broadcast(None if failure is None else f"{type(failure).__name__}: {failure}")
                if failure is not None:
                    raise failure
                if message is not None:
                    raise VaekitError(f"rank 0 stopped in epoch {epoch}: {message}")
                bar.total += bar.n - shown  # the epoch again: the steps the undone pass showed
                # a diverged pass stopped part-way: its time is no epoch's, and the budget check must not start
                # an epoch on the strength of it
                last_epoch_seconds = max(last_epoch_seconds, time.perf_counter() - started)
                epoch -= 1
                continue
            failure = None
            if distributed.is_main():
                previous = best
                try:
                    best = _end_epoch(cfg, run_dir, model, optimizer, splits, x_val, epoch, train_terms, best,
                                      started, writer, memory, schedule)
                    logger.on_epoch(epoch, optimizer.param_groups[0]["lr"])  # the record metrics.jsonl just got
                except Exception as e:  # e.g. a full disk: the other ranks must not wait for rank 0 forever
                    failure = e
                since_best = 0 if previous is None or best is None or best < previous else since_best + 1
                bar.set_postfix(epoch=epoch, loss=f"{train_terms['loss']:.2f}", refresh=False)
                if spiked:
                    _report_spike(cfg, run_dir, bar, epoch, last_train_loss, train_terms["loss"], len(x_val) > 0)
            last_train_loss = train_terms["loss"]
            message = distributed.broadcast(None if failure is None else f"{type(failure).__name__}: {failure}")
            if failure is not None:
                raise failure
            if message is not None:
                raise VaekitError(f"rank 0 stopped in epoch {epoch}: {message}")
            last_epoch_seconds = time.perf_counter() - started
            epoch_seconds.append(last_epoch_seconds)
            schedule.replan(epoch, schedule_end(epoch))
            last_saved = time.monotonic()  # _end_epoch checkpointed
            if cfg.train.patience and distributed.broadcast(since_best >= cfg.train.patience):  # all ranks stop
                bar.write(f"stopping after epoch {epoch}: no better validation loss in {cfg.train.patience} epochs")
                break
        writer.wait()  # the last epoch's files are on disk (or their error raised) before they are read back
    finally:
        writer.close()
        logger.flush()
        bar.close()
        torch.set_flush_denormal(False)
    if memory is not None:
        if memory.best_weights is not None:
            model.load_state_dict(memory.best_weights)
    elif distributed.is_main() and (run_dir / runs.MODEL_FILE).is_file():
        runs.load_weights(run_dir / runs.MODEL_FILE, model)  # the best epoch's weights, for the test and the result
    # What the model needs later besides its weights, from its training items: an AE's code prior (sampling) and
    # the training scores (anomaly thresholds). Saved with the model: no command re-reads the training data.
    model.fit_prior(model_input(b) for b in x_train.split(2000))
    train_scores = training_scores(model, x_train) if distributed.is_main() and len(x_train) else {}
    if run_dir is not None and distributed.is_main():
        runs.save_model(run_dir / runs.MODEL_FILE, model, cfg, splits.standardizer,
                        extra_tensors=runs.score_tensors(train_scores))
    # a denoiser's test figures are, like its validation curve, for corrupted inputs and clean targets
    x_test = as_tensor(splits.test, device)
    test = evaluate_terms(model, x_test, seed=cfg.train.seed, binarize=cfg.data.binarize,
                          noise=cfg.data.noise) if len(splits.test) and distributed.is_main() else {}
    accuracy = None
    if model.uses_labels and test and splits.test.y is not None:  # a classifier too: q(y|x) on the test split
        accuracy = classifier_accuracy(model, x_test, splits.test.y)
    logger.on_end(model, splits)  # picture grids and the latent projector of the best weights
    return TrainResult(run_dir, model, cfg, runs.read_metrics(run_dir) if memory is None else memory.metrics, test,
                       train_scores, accuracy)


def _training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Copies of the weights and the optimiser's state (its moments, step counts and any weight average), for
    ``_restore_training_state``. A few MB for the MLP models; taken once an epoch under --on-spike rollback."""
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            copy.deepcopy(optimizer.state_dict()))


def _restore_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                            state: tuple[dict, dict]) -> None:
    model.load_state_dict(state[0])  # copies into the same parameters: a compiled step keeps its graph
    optimizer.load_state_dict(state[1])  # takes the copies' tensors: the caller drops the snapshot
    average = getattr(optimizer, "weight_average", None)
    if average is not None:
        average.state_restored()


def finite_weights(model: torch.nn.Module) -> bool:
    """Whether every weight is finite (one device sync; checked once an epoch)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())


def _report_spike(cfg: RunConfig, run_dir: Path | None, bar: tqdm, epoch: int, previous: float | None,
                  current: float, validated: bool, rolled_back: tuple[int, float] | None = None,
                  weights_finite: bool = True) -> None:
    """Tell of a loss spike: a Python warning for a fit in memory (the estimators, as scikit-learn's), else a line
    on stderr."""
    spike = spike_message(cfg, epoch, previous, current, in_memory=run_dir is None, validated=validated,
                          rolled_back=rolled_back, weights_finite=weights_finite)
    if run_dir is None:
        warnings.warn(spike, RuntimeWarning, stacklevel=_callers_level())
    else:
        bar.write(f"vaekit: warning: {spike}", file=sys.stderr)


def _callers_level() -> int:
    """``warnings.warn``'s stacklevel of the first caller outside vaekit (and scikit-learn), for a warning raised
    from its caller: the line of the user's ``fit``, not vaekit's own. (Python 3.12's ``skip_file_prefixes``.)"""
    import sklearn
    skipped = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules[__package__], sklearn))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skipped):
        frame, level = frame.f_back, level + 1
    return level


def classifier_accuracy(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, batch_size: int = 2000) -> float:
    """Share of stored items x (N, ...) whose most probable class under q(y|x) is their label y (N,)."""
    return float((class_predictions(model, x, batch_size) == y).mean())


def _end_epoch(cfg: RunConfig, run_dir: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               splits: Splits, x_val: torch.Tensor, epoch: int, train_terms: dict[str, float], best: float | None,
               started: float, writer: runs.BackgroundWriter, memory: MemoryRecord | None = None,
               schedule: Schedule | None = None) -> float | None:
    """Validate, then append the metrics and queue the checkpoint and model on ``writer`` (rank 0), or keep them
    in ``memory``. Returns the best val loss. The previous epoch's files are on disk first: a failed write stops
    training here."""
    writer.wait()
    model_file: list[tuple[Path, bytes]] = []  # the model file's bytes, made from the weights' average if any
    with applied_average(optimizer):
        # validation in the training precision (bf16 moved MNIST's validation loss by -0.004 nats; 0.08 -> 0.05 s
        # of validation + checkpoint per epoch); it ranks epochs. The test figures are computed in fp32.
        val_terms = evaluate_terms(model, x_val, seed=cfg.train.seed, binarize=cfg.data.binarize,
                                   noise=cfg.data.noise, autocast=autocast_dtype(cfg, x_val.device)) \
            if len(x_val) else {}
        weights_finite = finite_weights(model)
        if not weights_finite or not math.isfinite(val_terms.get("loss", 0.0)):
            # e.g. an inf gradient in the epoch's last step
            kept = "" if run_dir is None else f"; {run_dir} keeps the checkpoint of epoch {epoch - 1}"
            what = "the weights became non-finite" if not weights_finite else \
                f"the validation loss became {val_terms['loss']}"
            raise TrainingDiverged(f"training diverged: {what} in epoch {epoch}{kept}. "
                                   f"Try a lower --lr (now {cfg.train.lr:g}) or --grad-clip 1.0")
        # The model file keeps the epoch with the best validation loss (every epoch without a validation split):
        # models that overfit, e.g. on statically binarized MNIST, are worth less at their last epoch.
        improved = not val_terms or best is None or val_terms["loss"] < best
        record = {"epoch": epoch, **{f"train_{k}": v for k, v in train_terms.items()},
                  **{f"val_{k}": v for k, v in val_terms.items()}, "best": improved,
                  "lr": optimizer.param_groups[0]["lr"],
                  "schedule": None if schedule is None else schedule.fraction(epoch),
                  "lr_scale": 1.0 if schedule is None else schedule.scale,
                  "seconds": time.perf_counter() - started}
        labelled = np.flatnonzero(splits.val.y >= 0) if model.uses_labels and splits.val.y is not None else []
        if len(labelled):
            # a curve to watch, from the validation split's labelled rows (with `--labels N`, all of them: N counts
            # the training split's); epochs are still ranked by the bound above, which needs no labels
            rows = x_val if len(labelled) == len(x_val) else select_rows(
                x_val, torch.from_numpy(labelled).to(x_val.device))
            record["val_accuracy"] = classifier_accuracy(model, rows, splits.val.y[labelled])
        # without validation the last weights are the model (or their average, which the model does not hold)
        averaged = getattr(optimizer, "weight_average", None) is not None
        if memory is not None and improved and (val_terms or averaged):
            memory.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif memory is None and improved:
            runs.save_model(run_dir / runs.MODEL_FILE, model, cfg, splits.standardizer,
                            write=lambda path, data: model_file.append((path, data)))
    if val_terms:
        best = val_terms["loss"] if best is None else min(best, val_terms["loss"])
    if memory is not None:
        memory.metrics.append(record)
        return best
    # Order matters for crash safety: a kill between these lines loses at most this epoch. The checkpoint holds
    # the raw weights (and the average in the optimiser's state), outside ``applied_average``.
    runs.append_metrics(run_dir, record)
    runs.save_checkpoint(run_dir / runs.CHECKPOINT_FILE, model, optimizer, cfg, epoch, splits.standardizer, best,
                         write=writer.write, lr_scale=1.0 if schedule is None else schedule.scale)
    for path, data in model_file:
        writer.write(path, data)
    return best


def loss_spiked(previous: float | None, current: float) -> bool:
    """Whether an epoch's mean training loss (the logged negative ELBO, nats an item) jumped from the previous
    epoch's by more than half its size (and 1 nat): far beyond an epoch's noise. On an H200 a conv HVAE's went from
    81.5 to 1,118 in one epoch under bf16, its code collapsed after it (bench/README.md, issue #17)."""
    return previous is not None and current - previous > max(1.0, 0.5 * abs(previous))


def spike_message(cfg: RunConfig, epoch: int, previous: float | None, current: float, in_memory: bool,
                  validated: bool, rolled_back: tuple[int, float] | None = None, weights_finite: bool = True) -> str:
    """What a loss spike (``loss_spiked``) did and what to try: in the flags' names for a run folder, in the
    estimators' parameter names for a fit in memory. ``validated``: a validation split picks the kept epoch.
    ``rolled_back``: (rollbacks so far, the lr's scale now) when --on-spike rollback undid the epoch;
    ``weights_finite`` False: it undid weights gone non-finite behind a finite loss."""
    if not math.isfinite(current):
        jumped = f"epoch {epoch}'s training loss became {current}"
    elif not weights_finite:
        jumped = f"epoch {epoch}'s weights became non-finite (its training loss {current:.2f})"
    else:
        jumped = f"epoch {epoch}'s training loss jumped from {previous:.2f} to {current:.2f}"
    if rolled_back is not None:
        count, scale = rolled_back
        back = f"epoch {epoch - 1}'s weights and optimiser state" if epoch > 1 else "the starting weights"
        return (f"{jumped}; rolled back to {back}, the lr now {scale:g} of its schedule's for the rest of the run, "
                f"and training epoch {epoch} again (rollback {count} of {MAX_ROLLBACKS})")
    if in_memory:
        kept = "the model keeps the best validation epoch" if validated else "the last epoch's weights are kept"
        hints = f"a lower lr (now {cfg.train.lr:g}) or precision='fp32'"
    else:
        kept = ("the model file keeps the best validation epoch" if validated else
                "the last epoch's weights are kept" + (" (--validation train)" if cfg.data.validation == "train"
                                                       else ""))
        hints = f"--grad-clip 1.0, a lower --lr (now {cfg.train.lr:g}) or --precision fp32"
    if cfg.train.on_spike == "rollback":  # its rollbacks are spent
        setting = "on_spike='rollback'" if in_memory else "--on-spike rollback"
        kept += f" ({setting} has rolled back {MAX_ROLLBACKS} times, its most)"
    return f"{jumped}, a spike that can collapse the code; {kept}. If it recurs, try {hints}"


def _epochs_since_best(run_dir: Path) -> int:
    """Epochs logged after the last one that wrote the model file (early stopping across a resume)."""
    flags = [m.get("best", True) for m in runs.read_metrics(run_dir)]
    return len(flags) - 1 - max((i for i, b in enumerate(flags) if b), default=-1)


def _prepare(cfg: RunConfig, run_dir: Path | None, resume: bool, overwrite: bool, device: torch.device
             ) -> tuple[torch.nn.Module, torch.optim.Optimizer, int, float | None, tuple[int, torch.Tensor] | None,
                        float]:
    """Model and optimiser, fresh or restored from the run's checkpoint; the run folder made ready (rank 0).
    Also returns the epochs done, the best validation loss, for a checkpoint taken inside an epoch where in that
    epoch it was, and the lr schedule's scale (``runs.load_checkpoint``)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    optimizer = make_optimizer(cfg, model)
    if run_dir is None:  # training in memory
        return model, optimizer, 0, None, None, 1.0
    error = None
    if distributed.is_main():
        try:
            if resume:
                runs.remove_stale_temp_files(run_dir)
            else:
                runs.prepare_run_dir(run_dir, overwrite)
        except VaekitError as e:
            error = e
    error = distributed.broadcast(error)  # every rank stops on rank 0's error
    if error is not None:
        raise error
    start_epoch, best, within, lr_scale = 0, None, None, 1.0
    if resume and (run_dir / runs.CHECKPOINT_FILE).is_file():
        start_epoch, best, within, lr_scale = runs.load_checkpoint(run_dir / runs.CHECKPOINT_FILE, model, optimizer)
    elif resume and distributed.is_main():
        print(f"vaekit: note: {run_dir} has no checkpoint (it was stopped before its first epoch ended), so "
              "training starts at epoch 1", file=sys.stderr)
    if distributed.is_main():
        if resume:
            runs.truncate_metrics(run_dir, start_epoch)  # stopped before the first checkpoint: start over
        runs.write_json(run_dir / runs.CONFIG_FILE, cfg.to_dict())
    return model, optimizer, start_epoch, best, within, lr_scale


def label_repeats(n_known: int, n_free: int, share: float = 0.25) -> int:
    """How often each of ``n_known`` labelled items is repeated so they make about ``share`` of an epoch's rows
    beside ``n_free`` unlabelled ones (at least once)."""
    return max(1, round(share * n_free / ((1 - share) * n_known))) if n_known else 1


def epoch_rows(n: int, labels: np.ndarray | None = None) -> int:
    """Rows an epoch passes over: the ``n`` training items, with a model that learns from ``labels`` (-1 = none)
    its labelled items repeated as ``oversample_labelled`` does."""
    if labels is None:
        return n
    known = int((labels >= 0).sum())
    return n + (label_repeats(known, n - known) - 1) * known


def oversample_labelled(x: torch.Tensor | FileTensor, y: torch.Tensor, share: float = 0.25
                        ) -> tuple[torch.Tensor | FileTensor, torch.Tensor]:
    """x (N, ...) and y (N,) with the labelled items (y >= 0) repeated so they make about ``share`` of the rows:
    with 100 labels among 50,000 items, a batch of 100 would hold one labelled item every five batches, and the
    classifier would hardly learn (Kingma et al. 2014 draw labelled and unlabelled batches apart)."""
    known = torch.nonzero(y >= 0).squeeze(1)
    repeats = label_repeats(len(known), len(y) - len(known), share)
    if repeats == 1:
        return x, y
    index = torch.cat([torch.nonzero(y < 0).squeeze(1), known.repeat(repeats)])
    return select_rows(x, index), y.index_select(0, index)


def train_epoch(objective: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, cfg: RunConfig,
                epoch: int, bar: tqdm, y: torch.Tensor | None = None,
                resumed: tuple[int, torch.Tensor] | None = None,
                save_within: Callable[[int, torch.Tensor], None] | None = None,
                schedule: Schedule | None = None) -> dict[str, float]:
    """One pass over ``x`` (and its labels ``y``, -1 = unlabelled, for a model that learns from them); returns
    the mean per-sample terms. Raises ``TrainingDiverged`` on NaN/inf.

    Every rank draws the same global batches and trains on its own slice of each. ``resumed`` = (steps done,
    their summed terms) continues an epoch a checkpoint stopped in: the same order, from the next batch.
    ``save_within(step, sums)`` is called on every rank at each progress refresh before the last step, with this
    rank's sums (it decides whether to checkpoint, and sums them over the ranks only then). ``schedule``: the lr
    schedule (default: to the configured epochs); from --iw-from of its decay on, the model trains on its IWAE
    bound (--iw-samples; before that on the ELBO).
    """
    objective.train()
    rank, size, _ = distributed.world()
    sums = torch.zeros(len(TERMS) + 1, device=x.device)  # loss, recon, kl sums and the item count
    shown = 0
    if resumed is not None:  # the sums were saved summed over ranks: rank 0 carries them
        shown = resumed[0]
        if rank == 0:
            sums += resumed[1].to(sums)
    dtype = autocast_dtype(cfg, x.device)
    # --compile-mode reduce-overhead on a GPU replays the step as CUDA graphs, whose outputs the next replay
    # overwrites: each step is marked as a new one (its loss and terms are used up before the next)
    graphs = cfg.train.compile and cfg.train.compile_mode == "reduce-overhead" and x.device.type == "cuda"
    params = [p for g in optimizer.param_groups for p in g["params"]]
    steps = math.ceil(len(x) / cfg.train.batch_size)
    schedule = schedule or Schedule(cfg.train)
    block, window = shuffle_plan(x, cfg.train.batch_size)
    order = shuffled_batches(len(x), cfg.train.batch_size, cfg.train.seed * 100_003 + epoch, x.device, block, window)
    todo = [(step, index.tensor_split(size)[rank])  # this rank's slice (B / world,) of each global batch
            for step, index in enumerate(order, 1) if resumed is None or step > shown]  # skip what a resume did
    for (step, index), batch in zip(todo, gather(x, (index for _, index in todo), window)):  # (B / world, ...)
        labels = None if y is None else y.index_select(0, index)
        clean = model_input(batch, cfg.data.binarize)
        noisy = corrupt(clean, cfg.data.noise) if cfg.data.noise else clean  # denoising: clean target
        progress = epoch - 1 + (step - 1) / steps  # epochs done, fractional
        for group in optimizer.param_groups:
            group["lr"] = cfg.train.lr * schedule.lr_factor(progress)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            # the weight goes in as a tensor: a changing Python float would recompile a compiled step
            loss, terms = objective(noisy, clean, torch.tensor(kl_weight(cfg.train, progress), device=x.device),
                                    labels, schedule.fraction(progress) >= cfg.train.iw_from)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        sums += torch.stack([*(terms[k].detach().sum() for k in TERMS), sums.new_tensor(len(batch))])
        if step % PROGRESS_EVERY == 0 or step == steps:
            total = distributed.sum_across(sums[[0, -1]])  # all ranks see the same value and stop together
            running = total[0].item() / total[1].item()  # a NaN or inf in any step so far shows up here
            if not math.isfinite(running):
                raise TrainingDiverged(f"training diverged: the loss became {running} in epoch {epoch}, "
                                       f"between steps {shown + 1} and {step}", loss=running)
            bar.set_postfix(epoch=epoch, loss=f"{running:.2f}", refresh=False)
            bar.update(step - shown)
            shown = step
            if save_within is not None and step < steps:
                save_within(step, sums)
    sums = distributed.sum_across(sums)
    return dict(zip(TERMS, (sums[:-1] / sums[-1]).tolist()))


def default_run_dir(cfg: RunConfig) -> Path:
    dataset = cfg.data.dataset.replace(":", "-").replace("/", "_").strip("._-") or "data"
    return Path("runs") / f"{dataset[:40]}-{cfg.model.model}-{time.strftime('%Y%m%d-%H%M%S')}"
