"""Experiment tracking beside the run folder: ``--log tensorboard`` writes ``RUN/tensorboard/``.

The training loop talks to one ``MetricsLogger``: ``on_epoch`` after each epoch's record is in metrics.jsonl,
``flush`` when the loop ends (even by an error), ``on_end`` once the best weights are back in the model. The
base class does nothing, so the loop never asks whether logging is on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from . import distributed, runs
from .config import RunConfig
from .errors import VaekitError
from .latent import posterior_means
from .tensors import as_tensor, model_input

TENSORBOARD_DIR = "tensorboard"
EMBEDDING_ITEMS = 2000  # test items in the projector: enough to see the clusters, small enough to load at once
SCALARS = ("loss", "recon", "kl", "accuracy")  # logged as loss/train, loss/val, ... (accuracy: val, models of labels)


class MetricsLogger:
    """Logs nothing: the logger of runs without ``--log``, and of every rank but 0 under torchrun."""

    def on_epoch(self, epoch: int, lr: float) -> None:
        """The epoch's record, as metrics.jsonl has it, and the learning rate of its last step."""

    def on_end(self, model: torch.nn.Module, splits) -> None:
        """Pictures and the latent embedding of the trained ``model`` (the best epoch's weights); closes."""

    def flush(self) -> None:
        """Put what is logged so far on disk (a run stopped by an error keeps its curves)."""


def check(cfg: RunConfig) -> None:
    """Refuse a ``--log`` whose package is missing before the run folder exists."""
    if cfg.train.log == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard writes through it)
        except ImportError:
            raise VaekitError("--log tensorboard needs the tensorboard package: "
                              "pip install 'vaekit[tensorboard]'") from None


def make_logger(cfg: RunConfig, run_dir: Path, start_epoch: int) -> MetricsLogger:
    """The run's logger: TensorBoard on rank 0 with ``--log tensorboard``, else one that does nothing."""
    if cfg.train.log != "tensorboard" or not distributed.is_main():
        return MetricsLogger()
    return TensorBoardLogger(Path(run_dir), start_epoch)


class TensorBoardLogger(MetricsLogger):
    """Scalars per epoch (global step = epoch); at the end sample and reconstruction grids and the projector."""

    def __init__(self, run_dir: Path, start_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.log_dir, self.epoch = run_dir, run_dir / TENSORBOARD_DIR, start_epoch
        if start_epoch == 0:  # a fresh (or overwritten) run: no curves of an earlier run under the same name
            shutil.rmtree(self.log_dir, ignore_errors=True)
        # A resumed run drops what was logged after its checkpoint's epoch (metrics.jsonl does the same).
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_epoch + 1 if start_epoch else None)

    def on_epoch(self, epoch: int, lr: float) -> None:
        self.epoch = epoch
        record = next(r for r in reversed(runs.read_metrics(self.run_dir)) if r.get("epoch") == epoch)
        for term in SCALARS:
            for split in ("train", "val"):
                if f"{split}_{term}" in record:  # no val_* without a validation split
                    self.writer.add_scalar(f"{term}/{split}", record[f"{split}_{term}"], epoch)
        self.writer.add_scalar("lr", lr, epoch)
        self.writer.add_scalar("seconds", record["seconds"], epoch)

    @torch.no_grad()
    def on_end(self, model: torch.nn.Module, splits) -> None:
        from .plots import image_grid  # here: matplotlib loads only for runs that log to TensorBoard

        epoch = self.epoch  # the pictures and the embedding sit at the last epoch's step

        model.eval()
        device = next(model.parameters()).device
        test = splits.test.subset(np.arange(min(len(splits.test), EMBEDDING_ITEMS)))
        is_image = test.is_image and tuple(model.cfg.input_shape) == test.item_shape
        if is_image:
            gen = torch.Generator(device=device).manual_seed(0)
            self._add_grid("samples", model.sample(64, gen).float().cpu().numpy(), 8, epoch, image_grid)
            if len(test):
                x = model_input(as_tensor(test, device)[:8])  # (8, C, H, W)
                recon = model.reconstruct(x).float().cpu().numpy()
                self._add_grid("reconstructions", np.concatenate([x.cpu().numpy(), recon]), len(x), epoch, image_grid)
        if len(test):
            codes = posterior_means(model, as_tensor(test, device))  # (N, L)
            labels = None if test.y is None else [
                test.class_names[y] if test.class_names and 0 <= y < len(test.class_names) else str(y)
                for y in test.y.tolist()]
            thumbnails = torch.from_numpy(test.as_float()) if is_image else None  # (N, C, H, W) in [0, 1]
            self.writer.add_embedding(torch.from_numpy(codes), metadata=labels, label_img=thumbnails,
                                      global_step=epoch, tag="latent")
        self.writer.close()

    def _add_grid(self, tag: str, images: np.ndarray, n_cols: int, epoch: int, image_grid) -> None:
        pixels = np.asarray(image_grid(images, n_cols))  # (H, W) or (H, W, 3) uint8
        self.writer.add_image(tag, pixels, epoch, dataformats="HW" if pixels.ndim == 2 else "HWC")

    def flush(self) -> None:
        self.writer.flush()
