"""Speed on one CUDA GPU, every contender measured in this run: vaekit vs the PyTorch example's pipeline vs pythae.

One command, on a machine with a GPU (pythae optional: its rows are skipped with a note when it is missing)::

    python bench/gpu.py [--data-dir ../shared/data] [--rounds 2] [--epochs 3] [--conv-items 50000]

Two workloads, each contender in its own process (so its GPU memory peak is its own), in ``--rounds`` rounds in a
rotated order (speed ratios are taken within a round):

- MNIST, the 784-400-20 MLP VAE:
  ``vaekit`` (the shipped defaults, 10 epochs: batch 512, warm-up + cosine, bf16 autocast where the GPU has it; the
  whole training split on the GPU, batched by index; an epoch's time includes validation and the checkpoint),
  ``vaekit --compile``, ``vaekit pytorch-example`` (batch 128, Adam 1e-3), ``reference`` (pytorch/examples
  vae/main.py as it runs on CUDA: torchvision-style PIL dataset, DataLoader(batch 128, shuffle, num_workers=1,
  pin_memory=True), ``.to(device)`` per batch, fp32) and ``pythae`` (0.1.2's TrainingPipeline, same model, batch
  128, on CUDA).
- 64x64 RGB images (``--conv-items`` Fashion-MNIST items upscaled to 64x64 and tinted with a random colour each,
  uint8): vaekit's conv VAE (conv 32-64, dense 400, latent 20, batch 128, Adam 1e-3) as ``vaekit conv`` (bf16) and
  the same networks in a plain PyTorch loop fed by a DataLoader (``loop conv``, fp32, pin_memory + non_blocking)
  and by pythae (``pythae conv``).

Each row gives s/epoch (median of steady epochs over the rounds), images/s, the fraction of the GPU's measured matmul
peak (training FLOPs per image counted by ``torch.utils.flop_counter`` over one forward + backward, against an
8192^3 matmul in the row's precision) and the peak GPU memory. Writes ``bench/results/gpu.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vaekit  # noqa: E402
from vaekit.config import DataConfig, ModelConfig, build_config  # noqa: E402
from vaekit.data import load_data  # noqa: E402
from vaekit.models import build_model  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 8192, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (start.elapsed_time(end) / 1e3)


def train_flops_per_image(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """Forward + backward FLOPs of the model's loss for one item (counted on a batch of 64)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(64, *shape, device="cuda")
    with FlopCounterMode(display=False) as counter:
        model.loss(x)["loss"].sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 64


def conv_images(data_dir: str, n: int, seed: int = 0) -> np.ndarray:
    """(n, 64, 64, 3) uint8: Fashion-MNIST items upscaled to 64x64 and tinted, so colour carries information."""
    x = load_data("fashion-mnist:train", DataConfig(data_dir=str(Path(data_dir) / "fashion-mnist"))).x[:n]
    t = torch.from_numpy(x).float()  # (n, 1, 28, 28)
    big = F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)  # (n, 1, 64, 64)
    tint = torch.from_numpy(np.random.default_rng(seed).uniform(0.3, 1.0, (len(x), 3, 1, 1))).float()
    return (big * tint).clamp(0, 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


def conv_config(shape: tuple[int, int, int]) -> ModelConfig:
    """vaekit's conv VAE with its default conv channels (32, 64), dense 400, latent 20."""
    return ModelConfig(model="vae", input_shape=shape, hidden=(400,), latent_dim=20, likelihood="bernoulli",
                       arch="conv")


# ---- workers: each runs in its own process and returns a JSON-able dict ----

def worker_vaekit(args, **settings) -> dict:
    run = Path(tempfile.mkdtemp()) / "run"
    result = vaekit.train(run_dir=run, progress=False, pictures=False, device="cuda", **settings)
    m = build_model(result.config.model).cuda()
    return {"epoch_seconds": [r["seconds"] for r in result.metrics], "test_loss": result.test.get("loss"),
            "train_images": None, "precision": "bf16" if result.config.train.precision != "fp32" else "fp32",
            "flops_per_image": train_flops_per_image(m, result.config.model.input_shape),
            "steps_per_epoch": None}


def worker_mnist_vaekit(args, **extra) -> dict:
    out = worker_vaekit(args, dataset="mnist", data_dir=str(Path(args.data_dir) / "mnist"), **extra)
    out["train_images"] = 54_000  # 10 % of the 60,000 held out for validation
    return out


def worker_reference(args) -> dict:
    from speed import ExampleVAE, PilMNIST, example_loss, mnist, mnist_labels
    from torch.utils.data import DataLoader
    mnist_dir = str(Path(args.data_dir) / "mnist")
    (train_x, test_x), (train_y, _) = mnist(mnist_dir), mnist_labels(mnist_dir)
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = ExampleVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PilMNIST(train_x, train_y), batch_size=128, shuffle=True, num_workers=1, pin_memory=True)
    seconds = []
    for _ in range(args.epochs):
        model.train()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for x, _ in loader:
            x = x.to(device)
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            loss.item()  # the example reads the loss every step
            opt.step()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        xt = torch.from_numpy(test_x).float().div(255).to(device)
        recon, mu, logvar = model(xt)
        test = example_loss(recon, xt, mu, logvar).item() / len(xt)
    cfg = build_config("pytorch-example", input_shape=(1, 28, 28), likelihood="bernoulli").model
    return {"epoch_seconds": seconds, "test_loss": test, "train_images": len(train_x), "precision": "fp32",
            "flops_per_image": train_flops_per_image(build_model(cfg).cuda(), (1, 28, 28))}


def worker_pythae(args) -> dict:
    try:
        import pythae  # noqa: F401
    except ImportError:
        return {"skipped": "pythae is not installed here"}
    from pythae_reference import train_pythae
    from speed import mnist
    train_x, test_x = mnist(str(Path(args.data_dir) / "mnist"))
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255  # noqa: E731
    r = train_pythae(flat(train_x), flat(test_x), args.epochs, device="cuda")
    cfg = build_config("pytorch-example", input_shape=(1, 28, 28), likelihood="bernoulli").model
    return {"epoch_seconds": r["epoch_seconds"], "test_loss": r["test_loss"], "train_images": len(train_x),
            "precision": "fp32", "flops_per_image": train_flops_per_image(build_model(cfg).cuda(), (1, 28, 28))}


def _conv_file(args) -> Path:
    path = Path(args.work) / "conv64.npy"
    if not path.exists():
        np.save(path, conv_images(args.data_dir, args.conv_items))
    return path


def worker_vaekit_conv(args) -> dict:
    path = _conv_file(args)
    out = worker_vaekit(args, dataset=f"npy:{path}", arch="conv", hidden=(400,), latent_dim=20, epochs=args.epochs)
    out["train_images"] = int(round(args.conv_items * 0.8))  # an npy file splits 80/10/10
    return out


def worker_loop_conv(args) -> dict:
    """vaekit's conv networks in a plain PyTorch loop, as a user would write it: DataLoader over uint8 items."""
    from torch.utils.data import DataLoader, TensorDataset
    x = np.load(_conv_file(args))[: int(round(args.conv_items * 0.8))]
    data = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (N, 3, 64, 64) uint8
    torch.manual_seed(0)
    model = build_model(conv_config((3, 64, 64))).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(data), batch_size=128, shuffle=True, num_workers=2, pin_memory=True)
    seconds = []
    for _ in range(args.epochs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for (xb,) in loader:
            xb = xb.cuda(non_blocking=True).float().div_(255)
            loss = model.loss(xb)["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    return {"epoch_seconds": seconds, "test_loss": None, "train_images": len(data), "precision": "fp32",
            "flops_per_image": train_flops_per_image(model, (3, 64, 64))}


def worker_pythae_conv(args) -> dict:
    try:
        import pythae  # noqa: F401
    except ImportError:
        return {"skipped": "pythae is not installed here"}
    from pythae_reference import train_pythae_networks
    x = np.load(_conv_file(args))[: int(round(args.conv_items * 0.8))]
    items = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / 255  # (N, 3, 64, 64)
    model = build_model(conv_config((3, 64, 64)))
    r = train_pythae_networks(model, items, args.epochs, device="cuda")
    return {"epoch_seconds": r["epoch_seconds"], "test_loss": None, "train_images": len(items), "precision": "fp32",
            "flops_per_image": train_flops_per_image(model.cuda(), (3, 64, 64))}


WORKERS = {
    "vaekit": lambda a: worker_mnist_vaekit(a, epochs=10),
    "vaekit --compile": lambda a: worker_mnist_vaekit(a, epochs=10, compile=True),
    "vaekit pytorch-example": lambda a: worker_mnist_vaekit(a, preset="pytorch-example", epochs=a.epochs),
    "reference": worker_reference,
    "pythae": worker_pythae,
    "vaekit conv": worker_vaekit_conv,
    "loop conv": worker_loop_conv,
    "pythae conv": worker_pythae_conv,
}


def run_worker(name: str, args, round_: int) -> dict:
    out = Path(tempfile.mkdtemp()) / "result.json"
    cmd = [sys.executable, __file__, "--worker", name, "--out", str(out), "--data-dir", args.data_dir,
           "--epochs", str(args.epochs), "--conv-items", str(args.conv_items), "--work", args.work]
    print(f"[{time.strftime('%H:%M:%S')}] round {round_ + 1}: {name} ...", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def steady(seconds: list[float]) -> list[float]:
    return seconds[1:] if len(seconds) > 1 else seconds


def summarise(rounds: list[dict], names: list[str], peak: dict, out: Path) -> dict:
    """Rows (median steady s/epoch over the rounds) and within-round ratios; writes them to ``out``."""
    rows = {}
    for name in names:
        runs_ = [rnd[name] for rnd in rounds]
        if "skipped" in runs_[0]:
            rows[name] = {"skipped": runs_[0]["skipped"]}
            continue
        epochs = [s for run in runs_ for s in steady(run["epoch_seconds"])]
        sec = float(np.median(epochs))
        r0 = runs_[0]
        ips = r0["train_images"] / sec
        rows[name] = {"epoch_seconds": sec, "epoch_seconds_range": [min(epochs), max(epochs)], "images_per_s": ips,
                      "fraction_of_matmul_peak": r0["flops_per_image"] * ips / peak[r0["precision"]],
                      "flops_per_image": r0["flops_per_image"], "precision": r0["precision"],
                      "peak_gpu_bytes": max(run["peak_gpu_bytes"] for run in runs_), "test_loss": r0["test_loss"],
                      "epochs": len(r0["epoch_seconds"])}
    ratios = {}
    for mine, others in (("vaekit", ("reference", "pythae", "vaekit pytorch-example")),
                         ("vaekit conv", ("loop conv", "pythae conv"))):
        for other in others:
            if mine in rows and other in rows and "skipped" not in rows[other]:
                by_round = [(rnd[mine]["train_images"] / np.median(steady(rnd[mine]["epoch_seconds"])))
                            / (rnd[other]["train_images"] / np.median(steady(rnd[other]["epoch_seconds"])))
                            for rnd in rounds]
                ratios[f"{mine} vs {other}"] = {"median": float(np.median(by_round)), "by_round": by_round}
    gpu = torch.cuda.get_device_name()
    summary = {"gpu": gpu, "torch": torch.__version__, "matmul_peak_flops": peak, "rows": rows,
               "ratios": ratios, "rounds": rounds, "date": time.strftime("%Y-%m-%d")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return summary


def report(summary: dict, n_rounds: int) -> None:
    gpu, peak, rows, ratios = summary["gpu"], summary["matmul_peak_flops"], summary["rows"], summary["ratios"]
    print(f"\n{gpu}; torch {torch.__version__}; measured matmul peak fp32 {peak['fp32'] / 1e12:.0f}, "
          f"bf16 {peak['bf16'] / 1e12:.0f} TFLOP/s; {n_rounds} round(s)")
    print(f"{'pipeline':24s} {'s/epoch':>8s} {'images/s':>10s} {'of peak':>8s} {'GPU mem':>9s} {'test loss':>9s}")
    for name, r in rows.items():
        if "skipped" in r:
            print(f"{name:24s} skipped: {r['skipped']}")
            continue
        loss = f"{r['test_loss']:.2f}" if r["test_loss"] is not None else "-"
        print(f"{name:24s} {r['epoch_seconds']:8.3f} {r['images_per_s']:10.0f} {r['fraction_of_matmul_peak']:8.2%} "
              f"{r['peak_gpu_bytes'] / 2**20:6.0f} MiB {loss:>9s}  ({r['epochs']} epochs, {r['precision']})")
    for k, v in ratios.items():
        print(f"{k}: {v['median']:.1f}x the images/s (rounds: {', '.join(f'{x:.1f}' for x in v['by_round'])})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3, help="epochs of the rows other than the vaekit defaults")
    p.add_argument("--conv-items", type=int, default=50_000)
    p.add_argument("--only", nargs="*")
    p.add_argument("--out", default=str(HERE / "results" / "gpu.json"))
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU")
    if args.worker:
        torch.cuda.reset_peak_memory_stats()
        result = WORKERS[args.worker](args)
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
        Path(args.out).write_text(json.dumps(result))
        return
    args.work = args.work or tempfile.mkdtemp()
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    names = args.only or list(WORKERS)
    rounds = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        rounds.append({n: run_worker(n, args, r) for n in order})
        # written after every round, so a run stopped by a time limit keeps the rounds it finished
        summary = summarise(rounds, names, peak, Path(args.out))
    report(summary, len(rounds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
