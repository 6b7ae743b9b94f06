"""Reference: pythae 0.1.2 training the PyTorch example's 784-400-20 VAE on MNIST.

The model is the one of pytorch/examples vae/main.py, plugged into pythae through its custom
architecture hooks: an encoder (``pythae.models.nn.BaseEncoder``: Linear 784->400, ReLU, two Linear
400->20 heads returning ``ModelOutput(embedding=mu, log_covariance=logvar)``) and a decoder
(``BaseDecoder``: Linear 20->400, ReLU, Linear 400->784, Sigmoid returning
``ModelOutput(reconstruction=...)``), in ``pythae.models.VAE`` with ``VAEConfig(input_dim=(784,),
latent_dim=20, reconstruction_loss="bce")``. It is trained by pythae's own ``TrainingPipeline``
(which builds a ``BaseTrainer``) with ``BaseTrainerConfig(per_device_train_batch_size=128,
learning_rate=1e-3, optimizer_cls="Adam", no_cuda=True)``, no eval dataset, on CPU.

pythae's VAE loss (pythae/models/vae/vae_model.py, ``VAE.loss_function``) with ``"bce"`` is, per
sample, ``F.binary_cross_entropy(recon, x, reduction="none").sum(-1)`` (summed over the 784 pixels)
plus ``KLD = -0.5 * sum(1 + logvar - mu^2 - exp(logvar))`` (summed over the 20 latent dims), both
with one reparameterised z per sample; the returned loss is the *mean over the batch* of that sum.
The PyTorch example sums over the batch instead (``reduction="sum"``), so its gradients are
batch_size (128) times larger; under Adam this only matters through eps (1e-8), i.e. not in
practice. Per-sample, the two objectives are identical, so the test loss below (mean per test image
of BCE summed over pixels + KL, one z sample, the example's ``test()``) is directly comparable.

Timing: ``epoch_seconds[i]`` is the wall time of pythae's ``BaseTrainer.train_step`` for epoch i,
taken with ``time.perf_counter`` by a ``TrainingCallback`` passed to the pipeline: from
``on_train_step_begin`` (the first statement of ``train_step``) to the last ``on_train_step_end``
of the epoch (called after each batch's optimizer step and ``loss.item()``). It therefore covers
pythae's DataLoader (shuffling, per-sample ``BaseDataset.__getitem__`` -> ``DatasetOutput``,
``collate_dataset_output``), forward + loss, backward, Adam step, the per-step ``loss.item()`` and
pythae's per-step callbacks (progress bar). It leaves out what pythae does between epochs and
around training: the ``deepcopy`` of the model it keeps as "best on train" after every epoch,
logging, the final ``save_model`` (into a temporary directory), the sanity-check forward pass in
``BaseTrainer.__init__`` and the data preprocessing in the pipeline. No eval dataset is passed, so
pythae runs no evaluation; ``steps_saving`` and ``steps_predict`` are None (no checkpoints).

Run it with the separate environment (pythae is not a vaekit dependency)::

    python3 -m venv /tmp/venv-pythae
    /tmp/venv-pythae/bin/pip install torch==2.13.0   # first, pinned
    /tmp/venv-pythae/bin/pip install pythae numpy
    /tmp/venv-pythae/bin/python bench/pythae_reference.py [--epochs 1] [--n-train 6000] [--json-out F]

``import bench.pythae_reference`` works without pythae installed; ``train_pythae`` needs it.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


@functools.lru_cache(maxsize=None)
def _architectures():
    """The example's encoder and decoder as pythae custom architectures (pythae imported lazily)."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class ExampleEncoder(BaseEncoder):
        """Linear 784->400, ReLU; Linear 400->20 (mean) and Linear 400->20 (log-variance)."""

        def __init__(self):
            BaseEncoder.__init__(self)
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h1 = F.relu(self.fc1(x.reshape(-1, 784)))
            return ModelOutput(embedding=self.fc21(h1), log_covariance=self.fc22(h1))

    class ExampleDecoder(BaseDecoder):
        """Linear 20->400, ReLU, Linear 400->784, Sigmoid."""

        def __init__(self):
            BaseDecoder.__init__(self)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.fc4(F.relu(self.fc3(z)))))

    return ExampleEncoder, ExampleDecoder


def _epoch_timer_class():
    from pythae.trainers.training_callbacks import TrainingCallback

    class EpochTimer(TrainingCallback):
        """Wall time of each ``train_step``: first ``on_train_step_begin`` to last ``on_train_step_end``."""

        def __init__(self):
            self.epoch_seconds: list[float] = []
            self.train_epoch_loss: list[float] = []
            self._t0 = self._t_last = None

        def on_train_step_begin(self, training_config, **kwargs):
            self._t0 = self._t_last = time.perf_counter()

        def on_train_step_end(self, training_config, **kwargs):
            self._t_last = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.epoch_seconds.append(self._t_last - self._t0)

        def on_log(self, training_config, logs, **kwargs):
            if "train_epoch_loss" in logs:
                self.train_epoch_loss.append(float(logs["train_epoch_loss"]))

    return EpochTimer


@contextlib.contextmanager
def _quiet_pythae():
    """Silence pythae's INFO loggers (each has its own console handler) and its tqdm progress bar.

    The bar is disabled by swapping the ``tqdm`` name in pythae's callbacks module for
    ``tqdm(disable=True)``; ``ProgressBarCallback`` still runs (its ``update`` returns at once).
    Everything is restored on exit.
    """
    import pythae.trainers.training_callbacks as cb

    saved_levels = {}
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("pythae") and isinstance(lg, logging.Logger):
            saved_levels[name] = lg.level
            lg.setLevel(logging.WARNING)
    saved_tqdm = cb.tqdm
    cb.tqdm = functools.partial(saved_tqdm, disable=True)
    try:
        yield
    finally:
        cb.tqdm = saved_tqdm
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


@torch.no_grad()
def example_test_loss(model, test_x: np.ndarray, batch_size: int = BATCH_SIZE) -> float:
    """Mean per test image of BCE (summed over pixels) + KL, one z sample: the example's ``test()``."""
    model.eval()
    total = 0.0
    x_all = torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.float32))
    for i in range(0, len(x_all), batch_size):
        x = x_all[i:i + batch_size]
        enc = model.encoder(x)
        mu, logvar = enc.embedding, enc.log_covariance
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = model.decoder(z).reconstruction
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        total += (bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())).item()
    return total / len(x_all)


def train_pythae(train_x: np.ndarray, test_x: np.ndarray, epochs: int, seed: int = 0,
                 progress: bool = False, device: str = "cpu") -> dict:
    """Train the example VAE with pythae's TrainingPipeline on ``train_x``; evaluate on ``test_x``.

    ``train_x``/``test_x``: float32 (N, 784) in [0, 1]. Returns a dict with
    ``epoch_seconds`` (wall seconds of pythae's ``train_step`` per epoch, see the module docstring),
    ``test_loss`` (mean per test image of BCE summed over pixels + KL, one z sample, evaluated on the
    weights after the last epoch), ``images_per_second`` (``len(train_x)`` / the median of the
    epoch times after the first, or of the only epoch when ``epochs == 1``), ``train_epoch_loss``
    (pythae's per-epoch mean of its batch losses) and ``best_model_is_last`` (whether the model
    pythae keeps, the best on train loss, is the last epoch's).
    ``progress=True`` keeps pythae's progress bar and INFO logging.
    """
    from pythae.models import VAE, VAEConfig
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    train_x = np.ascontiguousarray(train_x, dtype=np.float32).reshape(len(train_x), 784)
    test_x = np.ascontiguousarray(test_x, dtype=np.float32).reshape(len(test_x), 784)
    encoder_cls, decoder_cls = _architectures()
    timer = _epoch_timer_class()()

    torch.manual_seed(seed)  # model initialisation; pythae re-seeds (set_seed) before its epoch loop
    with tempfile.TemporaryDirectory(prefix="pythae_ref_") as tmp, \
            (contextlib.nullcontext() if progress else _quiet_pythae()):
        model = VAE(VAEConfig(input_dim=(784,), latent_dim=20, reconstruction_loss="bce"),
                    encoder=encoder_cls(), decoder=decoder_cls())
        config = BaseTrainerConfig(
            output_dir=tmp,                # pythae always saves final_model/ at the end: keep it here
            num_epochs=epochs,
            per_device_train_batch_size=BATCH_SIZE,
            per_device_eval_batch_size=BATCH_SIZE,
            optimizer_cls="Adam",
            learning_rate=LEARNING_RATE,
            steps_saving=None,             # no checkpoints
            steps_predict=None,            # no prediction step (it would need an eval set)
            seed=seed,
            no_cuda=device == "cpu",       # CPU unless asked for CUDA (bench/gpu.py)
            amp=False,
        )
        pipeline = TrainingPipeline(model=model, training_config=config)
        pipeline(train_data=train_x, eval_data=None, callbacks=[timer])
        trained = pipeline.trainer.model  # weights after the last epoch, as in the PyTorch example
        best_is_last = all(torch.equal(a, b) for a, b in zip(
            trained.state_dict().values(), pipeline.trainer._best_model.state_dict().values()))
    test_loss = example_test_loss(trained.cpu(), test_x)

    seconds = timer.epoch_seconds
    steady = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    return {
        "epoch_seconds": seconds,
        "test_loss": test_loss,
        "images_per_second": len(train_x) / steady,
        "train_epoch_loss": timer.train_epoch_loss,
        "best_model_is_last": best_is_last,
    }


def train_pythae_networks(model: nn.Module, items: np.ndarray, epochs: int, seed: int = 0,
                          device: str = "cuda") -> dict:
    """pythae's TrainingPipeline on a vaekit VAE's own encoder and decoder networks (bench/gpu.py's conv rows).

    ``model``: a vaekit Bernoulli VAE (its encoder gives (B, 2L) = mean and log-variance, its decoder logits);
    ``items``: float32 (N, *input_shape) in [0, 1]. Batch 128, Adam 1e-3, like ``train_pythae``.
    Returns ``epoch_seconds`` (pythae's ``train_step`` per epoch).
    """
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    shape = tuple(items.shape[1:])

    class Encoder(BaseEncoder):
        def __init__(self):
            BaseEncoder.__init__(self)
            self.net = model.encoder

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=-1)  # (B, L) each
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            BaseDecoder.__init__(self)
            self.net = model.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, *shape))

    timer = _epoch_timer_class()()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="pythae_net_") as tmp, _quiet_pythae():
        vae = VAE(VAEConfig(input_dim=shape, latent_dim=model.cfg.latent_dim, reconstruction_loss="bce"),
                  encoder=Encoder(), decoder=Decoder())
        config = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, per_device_train_batch_size=BATCH_SIZE,
                                   per_device_eval_batch_size=BATCH_SIZE, optimizer_cls="Adam",
                                   learning_rate=LEARNING_RATE, steps_saving=None, steps_predict=None, seed=seed,
                                   no_cuda=device == "cpu", amp=False)
        TrainingPipeline(model=vae, training_config=config)(train_data=items, eval_data=None, callbacks=[timer])
    return {"epoch_seconds": timer.epoch_seconds}


def load_mnist_images(path: Path) -> np.ndarray:
    """An MNIST IDX image file (.gz or raw) as float32 (N, 784) in [0, 1]."""
    raw = gzip.open(path, "rb").read() if str(path).endswith(".gz") else Path(path).read_bytes()
    magic, n, rows, cols = np.frombuffer(raw, ">u4", count=4)
    if magic != 0x00000803:
        raise ValueError(f"{path}: not an IDX image file (magic {magic:#x})")
    pixels = np.frombuffer(raw, np.uint8, count=int(n * rows * cols), offset=16)
    return pixels.reshape(int(n), int(rows * cols)).astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=6000, help="first N training images (0: all 60,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None, help="also write the result as JSON here")
    args = parser.parse_args()

    data = Path(args.data_dir)
    train_x = load_mnist_images(data / "train-images-idx3-ubyte.gz")
    test_x = load_mnist_images(data / "t10k-images-idx3-ubyte.gz")
    if args.n_train:
        train_x = train_x[:args.n_train]
    from importlib.metadata import version

    pythae_version = version("pythae")
    t = time.perf_counter()
    result = train_pythae(train_x, test_x, args.epochs, seed=args.seed)
    total = time.perf_counter() - t
    print(f"pythae {pythae_version}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(train_x)} train images, {len(test_x)} test images, {args.epochs} epoch(s), batch {BATCH_SIZE}")
    print(f"epoch seconds (train_step): {[round(s, 3) for s in result['epoch_seconds']]}; "
          f"whole call incl. set-up, save and test: {total:.2f} s")
    print(f"images/s {result['images_per_second']:.0f}; train loss per epoch "
          f"{[round(v, 2) for v in result['train_epoch_loss']]}; test loss {result['test_loss']:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**result, "n_train": len(train_x), "epochs": args.epochs,
                                                   "pythae": pythae_version, "torch": torch.__version__,
                                                   "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
