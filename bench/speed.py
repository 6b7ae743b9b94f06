"""Speed and scale on MNIST, every contender measured in this run: vaekit vs the PyTorch example's pipeline vs pythae.

One command (``make bench`` installs pythae into ``.venv-bench`` after the pinned torch, then runs this)::

    python bench/speed.py [--data-dir ../shared/data/mnist] [--rounds 3] [--epochs 3] [--quality-epochs 12] [--no-nll]

Each contender trains in its own process (so its peak RSS is its own) on the same CPU threads, one after the
other, in ``--rounds`` rounds (3), each in a rotated order. The host this runs on changes speed by up to 1.7x
within minutes; in rounds, every contender sees the same mix of fast and slow spells, and each speed ratio is
taken within a round (the median over the rounds is reported, with its range):

- ``vaekit``: ``vaekit train --dataset mnist --epochs 10`` with the shipped defaults (784-400-20 VAE;
  the MLP recipe: batch 512, warm-up + cosine to lr 1.5e-2; bf16 autocast where the CPU has it). Its
  epoch time is wall time per epoch *including* validation and the checkpoint; its training split is
  54,000 images (10 % validation), so speed ratios use images/s.
- ``vaekit --compile``: the same with ``torch.compile``.
- ``vaekit pytorch-example``: the preset (batch 128, constant Adam 1e-3), the reference's own settings.
- ``reference``: the PyTorch example (pytorch/examples, vae/main.py) fed as it is fed there: a Dataset
  that turns one image at a time through PIL into a float tensor (torchvision's MNIST + ToTensor), a
  shuffling DataLoader at batch 128, its model, summed BCE + KLD, Adam 1e-3. In the first round it trains
  ``--quality-epochs`` (12) epochs and its test loss is taken after every epoch (outside the clock) for the
  time-to-quality figure; in the others, ``--epochs``.
- ``pythae``: pythae 0.1.2's TrainingPipeline on the same 784-400-20 model (bench/pythae_reference.py),
  batch 128, Adam 1e-3; skipped with a note when pythae is not installed.
- ``nll``: ``vaekit evaluate RUN --nll --k 5000`` of the vaekit run over the 10,000 test images, timed;
  and the bf16-vs-fp32 difference of the estimate on the first ``--nll-check`` test images.

Prints a table and writes ``bench/results/speed.json``.
"""
from __future__ import annotations

import argparse
import json
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
from vaekit.tensors import autocast_dtype, bf16_supported, describe_machine

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
    """What torchvision's ``MNIST(..., transform=ToTensor())`` does per item, without torchvision (no CPU build
    here): the split is held as torch tensors (images uint8 (N, 28, 28), labels int64); an item is indexed out
    of them, turned into a PIL image, then by ToTensor into a (1, 28, 28) float tensor in [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        img, target = self.data[i], int(self.targets[i])
        img = Image.fromarray(img.numpy(), mode="L")
        return self.to_tensor(img), target

    @staticmethod
    def to_tensor(pic: Image.Image) -> torch.Tensor:
        """ToTensor on a PIL image: HWC uint8 -> CHW float / 255."""
        if not isinstance(pic, Image.Image):
            raise TypeError(f"pic should be a PIL Image, got {type(pic)}")
        t = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        t = t.view(pic.size[1], pic.size[0], len(pic.getbands())).permute(2, 0, 1).contiguous()
        return t.to(dtype=torch.get_default_dtype()).div(255)


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


def mnist_labels(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    cfg = DataConfig(data_dir=data_dir)
    return load_data("mnist:train", cfg).y, load_data("mnist:test", cfg).y  # (N,)


def reference_test_loss(model: nn.Module, test_x: np.ndarray, test_y: np.ndarray) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, _ in DataLoader(PilMNIST(test_x, test_y), batch_size=128):
            recon, mu, logvar = model(x)
            total += example_loss(recon, x, mu, logvar).item()
    return total / len(test_x)


def worker_reference(args) -> dict:
    (train_x, test_x), (train_y, test_y) = mnist(args.data_dir), mnist_labels(args.data_dir)
    torch.manual_seed(0)
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PilMNIST(train_x, train_y), batch_size=128, shuffle=True)
    seconds, test_curve = [], []
    for _ in range(args.quality_epochs if args.round == 0 else args.epochs):
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
        test_curve.append(reference_test_loss(model, test_x, test_y))  # outside the clock
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


def run_worker(name: str, args, run_dir: Path | None = None, round_: int = 0) -> dict:
    """One contender in a fresh process; returns its JSON result with its peak RSS."""
    out = Path(tempfile.mkdtemp()) / "result.json"
    cmd = [sys.executable, __file__, "--worker", name, "--out", str(out), "--data-dir", args.data_dir,
           "--epochs", str(args.epochs), "--quality-epochs", str(args.quality_epochs),
           "--nll-check", str(args.nll_check), "--round", str(round_)]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    print(f"[{time.strftime('%H:%M:%S')}] round {round_ + 1}: {name} ...", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def steady_epochs(seconds: list[float]) -> list[float]:
    """The epoch times after the first (which pays for warm-up and compiling)."""
    return seconds[1:] if len(seconds) > 1 else seconds


def images_per_s(result: dict) -> float:
    return result["train_images"] / float(np.median(steady_epochs(result["epoch_seconds"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all contenders, each in a rotated order")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the pure-speed rows (pythae, preset)")
    parser.add_argument("--quality-epochs", type=int, default=12, help="reference epochs for time to quality")
    parser.add_argument("--nll-check", type=int, default=1000, help="test images for the bf16-vs-fp32 NLL check")
    parser.add_argument("--no-nll", action="store_true", help="skip the NLL timing")
    parser.add_argument("--only", nargs="*", help="run only these contenders")
    parser.add_argument("--out", default=str(HERE / "results" / "speed.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
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
    rounds: list[dict[str, dict]] = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        done = {n: run_worker(n, args, work / "vaekit-run" if n == "vaekit" and r == 0 else None, r) for n in order}
        rounds.append({n: done[n] for n in names})
    results = rounds[0]  # the first round's runs give the quality figures (test losses, the reference's curve)
    if not args.no_nll and "vaekit" in results:
        results["nll"] = run_worker("nll", args, work / "vaekit-run")

    rows = {}
    for name in (n for n in WORKERS if n in results and n != "nll"):
        if "skipped" in results[name]:
            continue
        runs_ = [rnd[name] for rnd in rounds]
        epochs = [sec for run in runs_ for sec in steady_epochs(run["epoch_seconds"])]
        sec = float(np.median(epochs))
        r = results[name]
        top = peak[r["precision"]] or peak["fp32"]
        rows[name] = {"epoch_seconds": sec, "epoch_seconds_range": [min(epochs), max(epochs)],
                      "images_per_s": r["train_images"] / sec,
                      "fraction_of_matmul_peak": FLOP_PER_IMAGE * r["train_images"] / sec / top,
                      "peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs_), "test_loss": r["test_loss"],
                      "epochs": len(r["epoch_seconds"]), "precision": r["precision"]}
    print(f"\nMNIST, 784-400-20 VAE; torch {torch.__version__}, {torch.get_num_threads()} threads; measured matmul "
          f"peak fp32 {peak['fp32'] / 1e12:.3f}" + (f", bf16 {peak['bf16'] / 1e12:.3f}" if peak["bf16"] else "")
          + " TFLOP/s (each row against its own precision's peak)")
    print(f"{args.rounds} round(s); s/epoch is the median of every steady epoch of every round (range in brackets)")
    print(f"{'pipeline':24s} {'s/epoch':>8s} {'(range)':>13s} {'images/s':>9s} {'of peak':>8s} {'peak RSS':>9s} "
          f"{'test loss':>10s}")
    for name, r in rows.items():
        low, high = r["epoch_seconds_range"]
        print(f"{name:24s} {r['epoch_seconds']:8.3f} {f'({low:.3f}-{high:.3f})':>13s} {r['images_per_s']:9.0f} "
              f"{r['fraction_of_matmul_peak']:8.1%} {r['peak_rss_bytes'] / 2**20:6.0f} MiB {r['test_loss']:10.2f}  "
              f"({r['epochs']} epochs, {r['precision']})")
    summary = {}
    if "vaekit" in rows:
        for other in ("reference", "pythae"):
            if other in rows:
                # within each round, so both sides ran minutes apart at most
                ratios = [images_per_s(rnd["vaekit"]) / images_per_s(rnd[other]) for rnd in rounds]
                summary[f"speedup_vs_{other}"] = float(np.median(ratios))
                summary[f"speedup_vs_{other}_by_round"] = ratios
                print(f"vaekit defaults vs {other}: {summary[f'speedup_vs_{other}']:.1f}x the images/s, median of "
                      f"the rounds ({', '.join(f'{x:.1f}' for x in ratios)}; "
                      f"target: {'25' if other == 'reference' else '6'}x)")
        vk = rows["vaekit"]
        v = results["vaekit"]
        summary["vaekit_epoch_seconds"] = vk["epoch_seconds"]
        summary["vaekit_10_epoch_test_loss"] = v["test_loss"]
        summary["vaekit_time_to_quality_s"] = v["train_seconds"] if v["test_loss"] <= QUALITY else None
        print(f"vaekit defaults: {vk['epoch_seconds']:.3f} s/epoch incl. validation (target 0.6); "
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
    out.write_text(json.dumps({"rows": rows, "summary": summary, "raw": results, "rounds": rounds,
                               "matmul_peak_flops": peak,
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": describe_machine(),
                               "date": time.strftime("%Y-%m-%d")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
