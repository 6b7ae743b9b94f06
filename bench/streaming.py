"""Streaming (issue #16): one training epoch over an .npy of millions of MNIST-sized items, against
the same items loaded into memory, in the same run: peak resident memory and items per second.

    python bench/streaming.py [--items 3000000] [--rounds 2] [--dir DIR] [--keep]

The array is built from MNIST's 60,000 training images with augmentation (each copy shifted by up to 2 pixels
in x and y, drawn per item with a fixed seed), written straight to disk with ``np.lib.format.open_memmap`` (uint8,
(N, 28, 28): 3,000,000 items are 2.35 GB). Each measurement is a fresh process running
``vaekit.train(dataset="npy:FILE", stream="on"|"off", epochs=1, val_fraction=0)`` (the default MNIST model,
batch 128, fp32 or bf16 as the CPU has it); its peak RSS is the process's ``ru_maxrss`` and its rate is the
training items over the epoch's seconds in metrics.jsonl (no validation split, so that is the pass over the
training items and the checkpoint). Rounds alternate the two modes, since this machine's speed drifts.

The file is read from the OS page cache when it fits there (it is written just before): the rate is that of
the reading path, not of the disk. Writes bench/results/streaming.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "mnist"
CHILD = """
import json, resource, sys, time
from pathlib import Path
import vaekit
path, mode, run_dir = sys.argv[1:4]
started = time.perf_counter()
result = vaekit.train(dataset=f"npy:{path}", stream=mode, epochs=1, val_fraction=0.0, run_dir=run_dir,
                      progress=False, pictures=False, seed=0)
record = json.loads((Path(run_dir) / "metrics.jsonl").read_text().splitlines()[-1])
summary = json.loads((Path(run_dir) / "summary.json").read_text())
print(json.dumps({"epoch_seconds": record["seconds"], "train_loss": record["train_loss"],
                  "test_loss": summary["test"]["loss"], "total_seconds": time.perf_counter() - started,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def mnist_images() -> np.ndarray:
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def build(path: Path, n: int, seed: int = 0, chunk: int = 100_000) -> float:
    """Write n augmented MNIST items (N, 28, 28) uint8 to ``path``; returns seconds taken."""
    started = time.perf_counter()
    base = mnist_images()
    padded = np.pad(base, ((0, 0), (2, 2), (2, 2)))  # (60000, 32, 32): room for shifts of up to 2 pixels
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        source = rng.integers(0, len(base), k)
        dy, dx = rng.integers(0, 5, k), rng.integers(0, 5, k)
        for sy in range(5):
            for sx in range(5):
                sel = np.flatnonzero((dy == sy) & (dx == sx))
                out[start + sel] = padded[source[sel], sy:sy + 28, sx:sx + 28]
        print(f"\rbuilding {path.name}: {start + k:,}/{n:,} items", end="", file=sys.stderr, flush=True)
    out.flush()
    del out
    print(file=sys.stderr)
    return time.perf_counter() - started


def measure(path: Path, mode: str, work: Path) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=work)) / "run"
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(run_dir)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where the array is written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the array (and reuse one of the same size)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "streaming.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.dir))
    path = (args.dir or work) / f"augmented-mnist-{args.items}.npy"
    build_seconds = 0.0 if args.keep and path.is_file() else build(path, args.items)
    size = path.stat().st_size
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                runs[mode].append(measure(path, mode, work))
                m = runs[mode][-1]
                print(f"round {r + 1} stream={mode}: epoch {m['epoch_seconds']:.1f} s, peak RSS "
                      f"{m['peak_rss_bytes'] / 2**30:.2f} GiB, test loss {m['test_loss']:.3f}", file=sys.stderr)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    train_items = args.items - int(round(args.items * 0.1))  # the 10 % test holdout; no validation split
    rate = {mode: statistics.median(train_items / m["epoch_seconds"] for m in runs[mode]) for mode in runs}
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "items": args.items, "train_items": train_items,
              "file_bytes": size, "build_seconds": build_seconds, "rounds": args.rounds, "runs": runs,
              "items_per_second": rate, "streamed_over_in_memory": rate["on"] / rate["off"],
              "peak_rss_gib": {mode: max(m["peak_rss_bytes"] for m in runs[mode]) / 2**30 for mode in runs},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n**One epoch over {args.items:,} MNIST-sized items ({size / 1e9:.2f} GB on disk), median of "
          f"{args.rounds} rounds**\n")
    print("| data | items/s | peak RSS | test loss |")
    print("| --- | --- | --- | --- |")
    for mode, label in (("on", "streamed (--stream on)"), ("off", "in memory (--stream off)")):
        print(f"| {label} | {rate[mode]:,.0f} | {report['peak_rss_gib'][mode]:.2f} GiB | "
              f"{runs[mode][-1]['test_loss']:.3f} |")
    print(f"\nstreamed / in-memory rate: {report['streamed_over_in_memory']:.2f} (target >= 0.80); "
          f"peak RSS streamed {report['peak_rss_gib']['on']:.2f} GiB (target <= 1.5)")


if __name__ == "__main__":
    main()
