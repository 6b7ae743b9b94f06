"""Speed and scale on MNIST, every contender measured in this run: vaekit vs the PyTorch example's pipeline vs pythae.

One command (``make bench`` installs pythae into ``.venv-bench`` after the pinned torch, then runs this)::

    python bench/speed.py [--data-dir ../shared/data/mnist] [--epochs 3] [--quality-epochs 12] [--no-nll]

Each contender trains in its own process (so its peak RSS is its own) on the same CPU threads, one after
the other:

- ``vaekit``: ``vaekit train --dataset mnist --epochs 10`` with the shipped defaults (784-400-20 VAE;
  the MLP recipe: batch 512, warm-up + cosine to lr 1.5e-2; bf16 autocast where the CPU has it). Its
  epoch time is wall time per epoch *including* validation and the checkpoint; its training split is
  54,000 images (10 % validation), so speed ratios use images/s.
- ``vaekit --compile``: the same with ``torch.compile``.
- ``vaekit pytorch-example``: the preset (batch 128, constant Adam 1e-3), the reference's own settings.
- ``reference``: the PyTorch example (pytorch/examples, vae/main.py) fed as it is fed there: a Dataset
  that turns one image at a time through PIL into a float tensor (torchvision's MNIST + ToTensor), a
  shuffling DataLoader at batch 128, its model, summed BCE + KLD, Adam 1e-3. Its test loss is taken
  after every epoch (outside the clock) for the time-to-quality figure.
- ``pythae``: pythae 0.1.2's TrainingPipeline on the same 784-400-20 model (bench/pythae_reference.py),
  batch 128, Adam 1e-3; skipped with a note when pythae is not installed.
- ``nll``: ``vaekit evaluate RUN --nll --k 5000`` of the vaekit run over the 10,000 test images, timed;
  and the bf16-vs-fp32 difference of the estimate on the first ``--nll-check`` test images.

Prints a table and writes ``bench/results/speed.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
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
from vaekit.training import autocast_dtype, bf16_supported

HERE = Path(__file__).resolve().parent
QUALITY = 105.6  # the PyTorch example's 10-epoch test loss
# Matmul FLOPs of one training image (2 per multiply-add): forward, weight gradient and input gradient of every
# layer, except the input gradient of the first (the data needs none).
FLOP_PER_IMAGE = 2 * (2 * 784 * 400 + 3 * (400 * 40 + 20 * 400 + 400 * 784))


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




def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def mnist(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    cfg = DataConfig(data_dir=data_dir)
    return load_data("mnist:train", cfg).x[:, 0], load_data("mnist:test", cfg).x[:, 0]  # (N, 28, 28) uint8


def reference_test_loss(model: nn.Module, test_x: np.ndarray) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, _ in DataLoader(PilMNIST(test_x), batch_size=128):
            recon, mu, logvar = model(x)
            total += example_loss(recon, x, mu, logvar).item()
    return total / len(test_x)


def worker_reference(args) -> dict:
    train_x, test_x = mnist(args.data_dir)
    torch.manual_seed(0)
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PilMNIST(train_x), batch_size=128, shuffle=True)
    seconds, test_curve = [], []
    for _ in range(args.quality_epochs):
        model.train()
        t = time.perf_counter()
        for x, _ in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            loss.item()  # the example reads the loss every step
            opt.step()
        seconds.append(time.perf_counter() - t)
        test_curve.append(reference_test_loss(model, test_x))  # outside the clock
    return {"epoch_seconds": seconds, "test_loss": test_curve[-1], "test_curve": test_curve,
            "train_images": len(train_x), "precision": "fp32"}


def worker_vaekit(args, **settings) -> dict:
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    result = vaekit.train(dataset="mnist", data_dir=args.data_dir, run_dir=run_dir, overwrite=True,
                          progress=False, pictures=False, **settings)
    wall = time.perf_counter() - started
    cfg = result.config.train
    return {"epoch_seconds": [m["seconds"] for m in result.metrics], "test_loss": result.test["loss"],
            "train_images": int(round(60_000 * (1 - result.config.data.val_fraction))),
            "train_seconds": sum(m["seconds"] for m in result.metrics), "call_seconds": wall,
            "settings": {"batch_size": cfg.batch_size, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
                         "epochs": cfg.epochs, "compile": cfg.compile},
            "precision": "bf16" if autocast_dtype(result.config, torch.device("cpu")) else "fp32"}


def worker_pythae(args) -> dict:
    try:
        import pythae  # noqa: F401
    except ImportError:
        return {"skipped": "pythae is not installed here (make bench installs it into .venv-bench)"}
    from importlib.metadata import version

    sys.path.insert(0, str(HERE))
    from pythae_reference import train_pythae

    train_x, test_x = mnist(args.data_dir)
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255  # noqa: E731
    result = train_pythae(flat(train_x), flat(test_x), args.epochs)
    return {"epoch_seconds": result["epoch_seconds"], "test_loss": result["test_loss"],
            "train_images": len(train_x), "precision": "fp32", "version": version("pythae")}


def worker_nll(args) -> dict:
    started = time.perf_counter()
    full = vaekit.evaluate(args.run_dir, nll=True, k=5000)
    seconds = time.perf_counter() - started
    check = {}
    if args.nll_check:
        subset = f"npz:{Path(args.run_dir) / 'nll_check.npz'}"
        np.savez(Path(args.run_dir) / "nll_check.npz", x=mnist(args.data_dir)[1][:args.nll_check])
        for precision in ("fp32", "bf16"):
            t = time.perf_counter()
            r = vaekit.evaluate(args.run_dir, subset, nll=True, k=5000, precision=precision)
            check[precision] = {"nll": r["nll"], "seconds": time.perf_counter() - t}
    return {"seconds": seconds, **{k: full[k] for k in ("nll", "nll_stderr", "bits_per_dim", "loss", "k",
                                                          "nll_precision", "n")}, "check": check}


WORKERS = {
    "vaekit": lambda a: worker_vaekit(a, epochs=10),
    "vaekit --compile": lambda a: worker_vaekit(a, epochs=10, compile=True),
    "vaekit pytorch-example": lambda a: worker_vaekit(a, preset="pytorch-example", epochs=a.epochs),
    "reference": worker_reference,
    "pythae": worker_pythae,
    "nll": worker_nll,
}


def run_worker(name: str, args, run_dir: Path | None = None) -> dict:
    """One contender in a fresh process; returns its JSON result with its peak RSS."""
    out = Path(tempfile.mkdtemp()) / "result.json"
    cmd = [sys.executable, __file__, "--worker", name, "--out", str(out), "--data-dir", args.data_dir,
           "--epochs", str(args.epochs), "--quality-epochs", str(args.quality_epochs),
           "--nll-check", str(args.nll_check)]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def steady(seconds: list[float]) -> float:
    """Median epoch time after the first (which pays for warm-up and compiling)."""
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the pure-speed rows (pythae, preset)")
    parser.add_argument("--quality-epochs", type=int, default=12, help="reference epochs for time to quality")
    parser.add_argument("--nll-check", type=int, default=1000, help="test images for the bf16-vs-fp32 NLL check")
    parser.add_argument("--no-nll", action="store_true", help="skip the NLL timing")
    parser.add_argument("--only", nargs="*", help="run only these contenders")
    parser.add_argument("--out", default=str(HERE / "results" / "speed.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args)
        result["peak_rss_bytes"] = peak_rss_bytes()
        Path(args.out).write_text(json.dumps(result))
        return

    peak = {"fp32": matmul_peak(), "bf16": matmul_peak(dtype=torch.bfloat16)
            if bf16_supported(torch.device("cpu")) else None}
    names = args.only or [n for n in WORKERS if n != "nll"]
    work = Path(tempfile.mkdtemp())
    results = {n: run_worker(n, args, work / "vaekit-run" if n == "vaekit" else None) for n in names}
    if not args.no_nll and "vaekit" in results:
        results["nll"] = run_worker("nll", args, work / "vaekit-run")

    rows = {}
    for name in (n for n in WORKERS if n in results and n != "nll"):
        r = results[name]
        if "skipped" in r:
            continue
        sec = steady(r["epoch_seconds"])
        top = peak[r["precision"]] or peak["fp32"]
        rows[name] = {"epoch_seconds": sec, "images_per_s": r["train_images"] / sec,
                      "fraction_of_matmul_peak": FLOP_PER_IMAGE * r["train_images"] / sec / top,
                      "peak_rss_bytes": r["peak_rss_bytes"], "test_loss": r["test_loss"],
                      "epochs": len(r["epoch_seconds"]), "precision": r["precision"]}
    print(f"\nMNIST, 784-400-20 VAE; torch {torch.__version__}, {torch.get_num_threads()} threads; measured matmul "
          f"peak fp32 {peak['fp32'] / 1e12:.3f}" + (f", bf16 {peak['bf16'] / 1e12:.3f}" if peak["bf16"] else "")
          + " TFLOP/s (each row against its own precision's peak)")
    print(f"{'pipeline':24s} {'s/epoch':>8s} {'images/s':>9s} {'of peak':>8s} {'peak RSS':>9s} {'test loss':>10s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['epoch_seconds']:8.3f} {r['images_per_s']:9.0f} {r['fraction_of_matmul_peak']:8.1%} "
              f"{r['peak_rss_bytes'] / 2**20:6.0f} MiB {r['test_loss']:10.2f}  ({r['epochs']} epochs, {r['precision']})")
    summary = {}
    if "vaekit" in rows:
        vk = rows["vaekit"]
        for other in ("reference", "pythae"):
            if other in rows:
                summary[f"speedup_vs_{other}"] = vk["images_per_s"] / rows[other]["images_per_s"]
                print(f"vaekit defaults vs {other}: {summary[f'speedup_vs_{other}']:.1f}x the images/s "
                      f"(target: {'25' if other == 'reference' else '6'}x)")
        v = results["vaekit"]
        summary["vaekit_epoch_seconds"] = vk["epoch_seconds"]
        summary["vaekit_10_epoch_test_loss"] = v["test_loss"]
        summary["vaekit_time_to_quality_s"] = v["train_seconds"] if v["test_loss"] <= QUALITY else None
        print(f"vaekit defaults: {vk['epoch_seconds']:.3f} s/epoch incl. validation and checkpoint (target 0.6); "
              f"10 epochs end at test loss {v['test_loss']:.2f} (target <= {QUALITY}) after {v['train_seconds']:.1f} s "
              f"of training ({v['call_seconds']:.1f} s for the whole call, data loading and test included); "
              f"peak RSS {v['peak_rss_bytes'] / 2**20:.0f} MiB (target 1024)")
    if "reference" in results:
        ref = results["reference"]
        reached = [i for i, loss in enumerate(ref["test_curve"]) if loss <= QUALITY]
        summary["reference_time_to_quality_s"] = sum(ref["epoch_seconds"][:reached[0] + 1]) if reached else None
        print("reference: test loss by epoch " + ", ".join(f"{v:.2f}" for v in ref["test_curve"]) + "; "
              + (f"<= {QUALITY} after epoch {reached[0] + 1}, {summary['reference_time_to_quality_s']:.1f} s of training"
                 if reached else f"never <= {QUALITY} in {len(ref['test_curve'])} epochs"))
    if results.get("pythae", {}).get("skipped"):
        print(f"pythae: {results['pythae']['skipped']}")
    if "nll" in results:
        n = results["nll"]
        print(f"NLL, k = {n['k']}, {n['n']} test images: {n['nll']:.3f} +- {n['nll_stderr']:.3f} nats (ELBO loss "
              f"{n['loss']:.3f}) in {n['seconds']:.1f} s ({n['nll_precision']} passes; target 300 s)")
        if n["check"]:
            c = n["check"]
            print(f"  first {args.nll_check} images: bf16 {c['bf16']['nll']:.4f} in {c['bf16']['seconds']:.1f} s, "
                  f"fp32 {c['fp32']['nll']:.4f} in {c['fp32']['seconds']:.1f} s "
                  f"(difference {c['bf16']['nll'] - c['fp32']['nll']:+.4f} nats)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "summary": summary, "raw": results, "matmul_peak_flops": peak,
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(),
                               "date": time.strftime("%Y-%m-%d")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
