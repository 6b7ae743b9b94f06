"""Epoch time of the 784-400-20 VAE at batch 128 on MNIST: vaekit vs the PyTorch example's pipeline.

Both run in this process, one after the other, on the same CPU threads. The reference is fed the way
the PyTorch example (pytorch/examples, vae/main.py) feeds it: a Dataset that turns one image at a
time through PIL into a float tensor (what torchvision's ``MNIST`` + ``ToTensor`` do), batched by a
DataLoader with shuffling, the example's model (sigmoid outputs, ``F.binary_cross_entropy`` summed,
KLD) and Adam 1e-3. Prints seconds per epoch, the ratio, images/s, test loss after the same number
of epochs, and the fraction of this CPU's measured fp32 matmul peak; writes JSON.

    python bench/epoch_speed.py [--data-dir ../shared/data/mnist] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import vaekit
from vaekit.data import load_data
from vaekit.config import DataConfig
from vaekit.training import bf16_supported

HERE = Path(__file__).resolve().parent
FLOP_PER_IMAGE = 3 * 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)  # forward + ~2x backward, multiply-adds x2


def matmul_peak(n: int = 2048, reps: int = 10, dtype=torch.float32) -> float:
    """Measured matmul FLOP/s of this CPU: the best of ``reps`` n x n products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


class PilMNIST(Dataset):
    """One image at a time through PIL into a float tensor, like torchvision's MNIST + ToTensor."""

    def __init__(self, images: np.ndarray):
        self.images = images  # (N, 28, 28) uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i], mode="L")
        t = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1).contiguous()
        return t.float().div(255), 0


class ExampleVAE(nn.Module):
    """The PyTorch example's model, verbatim in structure."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def example_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def run_reference(train_x: np.ndarray, test_x: np.ndarray, epochs: int) -> dict:
    torch.manual_seed(0)
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PilMNIST(train_x), batch_size=128, shuffle=True)
    seconds = []
    for _ in range(epochs):
        model.train()
        t = time.perf_counter()
        train_loss = 0.0
        for x, _ in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            opt.step()
        seconds.append(time.perf_counter() - t)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for x, _ in DataLoader(PilMNIST(test_x), batch_size=128):
            recon, mu, logvar = model(x)
            test_loss += example_loss(recon, x, mu, logvar).item()
    test_loss /= len(test_x)
    return {"epoch_seconds": seconds, "test_loss": test_loss}


def run_vaekit(data_dir: str, epochs: int, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = vaekit.train("pytorch-example", dataset="mnist", data_dir=data_dir, val_fraction=0.0,
                              epochs=epochs, precision=precision, run_dir=Path(tmp) / "run",
                              progress=False, pictures=False)
    return {"epoch_seconds": [m["seconds"] for m in result.metrics], "test_loss": result.test["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "epoch_speed.json"))
    args = parser.parse_args()

    cfg = DataConfig(data_dir=args.data_dir)
    train_x = load_data("mnist:train", cfg).x[:, 0]
    test_x = load_data("mnist:test", cfg).x[:, 0]
    peak = matmul_peak()
    peak_bf16 = matmul_peak(dtype=torch.bfloat16) if bf16_supported(torch.device("cpu")) else peak
    vk = run_vaekit(args.data_dir, args.epochs, "auto")
    vk32 = run_vaekit(args.data_dir, args.epochs, "fp32")
    ref = run_reference(train_x, test_x, args.epochs)

    def steady(r):  # epochs after the first (which pays for warm-up)
        s = r["epoch_seconds"]
        return float(np.median(s[1:] if len(s) > 1 else s))

    rows = {}
    for name, r, top in (("vaekit", vk, peak_bf16), ("vaekit --precision fp32", vk32, peak),
                         ("reference (PyTorch example pipeline)", ref, peak)):
        sec = steady(r)
        rows[name] = {"epoch_seconds": sec, "images_per_s": len(train_x) / sec,
                      "fraction_of_matmul_peak": FLOP_PER_IMAGE * len(train_x) / sec / top,
                      "test_loss_after_epochs": r["test_loss"], "all_epoch_seconds": r["epoch_seconds"]}
    ref_seconds = rows["reference (PyTorch example pipeline)"]["epoch_seconds"]
    ratio = ref_seconds / rows["vaekit"]["epoch_seconds"]
    print(f"MNIST, 784-400-20 VAE, batch 128, Adam 1e-3, {args.epochs} epochs each; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; measured matmul peak fp32 {peak / 1e12:.3f}, bf16 "
          f"{peak_bf16 / 1e12:.3f} TFLOP/s (each row against the peak of its own precision)")
    print(f"{'pipeline':40s} {'s/epoch':>8s} {'images/s':>10s} {'of peak':>8s} {'test loss':>10s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['epoch_seconds']:8.3f} {r['images_per_s']:10.0f} "
              f"{r['fraction_of_matmul_peak']:8.1%} {r['test_loss_after_epochs']:10.2f}")
    print(f"vaekit (default precision: {'bf16' if bf16_supported(torch.device('cpu')) else 'fp32'}) is "
          f"{ratio:.1f}x faster per epoch than the reference (target >= 6x); in fp32 "
          f"{ref_seconds / rows['vaekit --precision fp32']['epoch_seconds']:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "speedup": ratio, "matmul_peak_flops": peak,
                               "matmul_peak_flops_bf16": peak_bf16, "epochs": args.epochs,
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
