"""Streaming (issue #16): one training epoch over data larger than one wants in memory, streamed against the same
items loaded into memory, in the same run: peak resident memory and items per second.

    python bench/streaming.py [--source npy] [--items 3000000] [--rounds 2] [--dir DIR] [--keep]
    python bench/streaming.py --source parquet [--items 10000000]
    python bench/streaming.py --source folder [--items 100000]

``--source npy``: the array is built from MNIST's 60,000 training images with augmentation (each copy shifted by up to 2 pixels
in x and y, drawn per item with a fixed seed), written straight to disk with ``np.lib.format.open_memmap`` (uint8,
(N, 28, 28): 3,000,000 items are 2.35 GB). Each measurement is a fresh process running
``vaekit.train(dataset="npy:FILE", stream="on"|"off", epochs=1, val_fraction=0)`` (the default MNIST model,
batch 128, fp32 or bf16 as the CPU has it); its peak RSS is the process's ``ru_maxrss`` and its rate is the
training items over the epoch's seconds in metrics.jsonl (no validation split, so that is the pass over the
training items and the checkpoint). Rounds alternate the two modes, since this machine's speed drifts.

The file is read from the OS page cache when it fits there (it is written just before): the rate is that of
the reading path, not of the disk. Writes bench/results/streaming.json and prints a markdown table.

``--source parquet``: a table of N rows x 32 float32 features and an integer ``label`` column: the projections of N
augmented MNIST items (built as above) on the first 32 principal components of MNIST's training images, written with
pyarrow in row groups of 100,000 rows. vaekit reads it (``parquet:FILE``) record batch by record batch into a float32
``.npy`` in its cache once (timed apart, in its own process, with its peak RSS), then trains on it streamed or
loaded, standardised by the training rows' statistics, with the table model (a Gaussian likelihood).

``--source folder``: N augmented MNIST items (built as above) as 28x28 grayscale PNGs, one sub-folder per digit.
vaekit indexes the folder once (every file listed, its header read and checked; timed apart, then the cached index's
load timed again); then one epoch streamed with 0 (a thread), 2 and 4 DataLoader worker processes decoding, and one
with the folder decoded into memory first (its decode inside the run's total seconds, not the epoch's).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
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
import json, sys, time
from pathlib import Path
import vaekit
spec, mode, run_dir, workers = sys.argv[1:5]
started = time.perf_counter()
result = vaekit.train(dataset=spec, stream=mode, epochs=1, val_fraction=0.0, run_dir=run_dir,
                      progress=False, pictures=False, seed=0, workers=None if workers == "default" else int(workers))
record = json.loads((Path(run_dir) / "metrics.jsonl").read_text().splitlines()[-1])
summary = json.loads((Path(run_dir) / "summary.json").read_text())
print(json.dumps({"epoch_seconds": record["seconds"], "train_loss": record["train_loss"],
                  "test_loss": summary["test"]["loss"], "total_seconds": time.perf_counter() - started,
                  "peak_rss_bytes": peak_rss()}))
"""
# VmHWM, this process's own peak: ru_maxrss would carry the bench process's peak over from before the exec
PEAK_RSS = """
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
"""
PREPARE = """
import json, sys, time
import vaekit
from vaekit.config import DataConfig
started = time.perf_counter()
data = vaekit.load_data(sys.argv[1], DataConfig(dataset=sys.argv[1], stream="on"))
print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(data),
                  "peak_rss_bytes": peak_rss()}))
"""
FEATURES = 32


def mnist_images() -> np.ndarray:
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def mnist_labels() -> np.ndarray:
    with gzip.open(DATA / "train-labels-idx1-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)


def augmented(n: int, seed: int = 0, chunk: int = 100_000):
    """n augmented MNIST items, ``chunk`` at a time: (start, images (k, 28, 28) uint8, labels (k,)), each a
    training image shifted by up to 2 pixels in x and y (drawn per item, seeded)."""
    base = mnist_images()
    labels = mnist_labels()
    padded = np.pad(base, ((0, 0), (2, 2), (2, 2)))  # (60000, 32, 32): room for shifts of up to 2 pixels
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        source = rng.integers(0, len(base), k)
        dy, dx = rng.integers(0, 5, k), rng.integers(0, 5, k)
        images = np.empty((k, 28, 28), np.uint8)
        for sy in range(5):
            for sx in range(5):
                sel = np.flatnonzero((dy == sy) & (dx == sx))
                images[sel] = padded[source[sel], sy:sy + 28, sx:sx + 28]
        print(f"\rbuilding: {start + k:,}/{n:,} items", end="", file=sys.stderr, flush=True)
        yield start, images, labels[source]
    print(file=sys.stderr)


def build(path: Path, n: int, seed: int = 0) -> float:
    """Write n augmented MNIST items (N, 28, 28) uint8 to ``path``; returns seconds taken."""
    started = time.perf_counter()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    for start, images, _ in augmented(n, seed):
        out[start:start + len(images)] = images
    out.flush()
    del out
    return time.perf_counter() - started


def build_parquet(path: Path, n: int, seed: int = 0) -> float:
    """Write a Parquet table of n rows: 32 float32 features (augmented MNIST items projected on MNIST's first 32
    principal components) and their int64 ``label``; returns seconds taken."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    base = mnist_images().reshape(-1, 784).astype(np.float32) / 255.0
    mean = base.mean(0)
    basis = np.linalg.svd(base[:10_000] - mean, full_matrices=False)[2][:FEATURES].T  # (784, 32)
    names = [f"pc{i:02d}" for i in range(FEATURES)]
    with pq.ParquetWriter(path, pa.schema([*(pa.field(c, pa.float32()) for c in names),
                                           pa.field("label", pa.int64())])) as writer:
        for _, images, labels in augmented(n, seed):
            values = (images.reshape(len(images), -1).astype(np.float32) / 255.0 - mean) @ basis  # (k, 32)
            writer.write_table(pa.table({**{c: values[:, i] for i, c in enumerate(names)}, "label": labels}))
    return time.perf_counter() - started


def build_folder(root: Path, n: int, seed: int = 0) -> float:
    """Write n augmented MNIST items as PNGs under ``root``/<digit>/; returns seconds taken."""
    from PIL import Image

    started = time.perf_counter()
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
    for start, images, labels in augmented(n, seed):
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            Image.fromarray(image).save(root / str(label) / f"{start + i:07d}.png")
    return time.perf_counter() - started


def warm(path: Path) -> float:
    """Read a file once, sequentially, so both modes start from the page cache (a file kept from an earlier run may
    have been evicted: the first streamed epoch over a cold 2.35 GB file took 142 s here, against 57-63 s warm);
    returns seconds taken."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - started


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS + code, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(spec: str, mode: str, work: Path) -> dict:
    """One epoch in a fresh process; ``mode``: on, off, or on-wN (streamed with N worker processes)."""
    stream, _, workers = mode.partition("-w")
    return child(CHILD, spec, stream, str(Path(tempfile.mkdtemp(dir=work)) / "run"), workers or "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("npy", "parquet", "folder"), default="npy")
    parser.add_argument("--items", type=int, default=None,
                        help="default 3,000,000 (npy), 10,000,000 (parquet), 100,000 (folder)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where the array is written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the array (and reuse one of the same size)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "streaming.json")
    args = parser.parse_args()
    args.items = args.items or {"npy": 3_000_000, "parquet": 10_000_000, "folder": 100_000}[args.source]
    work = Path(tempfile.mkdtemp(dir=args.dir))
    os.environ["VAEKIT_CACHE"] = str(work / "cache")  # the children's: a Parquet table's npy goes here
    path = (args.dir or work) / {"npy": f"augmented-mnist-{args.items}.npy",
                                 "parquet": f"mnist-pca{FEATURES}-{args.items}.parquet",
                                 "folder": f"mnist-png-{args.items}"}[args.source]
    builder = {"npy": build, "parquet": build_parquet, "folder": build_folder}[args.source]
    build_seconds = 0.0 if args.keep and path.exists() else builder(path, args.items)
    size = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*.png"))
    spec = f"{args.source}:{path}"
    if path.is_file():
        print(f"read {path.name} once into the page cache in {warm(path):.1f} s", file=sys.stderr)
    prepared = None
    if args.source in ("parquet", "folder"):  # the one-off decode (table) or index (folder), timed apart
        prepared = {"first": child(PREPARE, spec), "cached": child(PREPARE, spec)}
        print(f"prepared {prepared['first']['rows']:,} items in {prepared['first']['seconds']:.1f} s (again, "
              f"from the cache: {prepared['cached']['seconds']:.1f} s), peak RSS "
              f"{prepared['first']['peak_rss_bytes'] / 2**30:.2f} GiB", file=sys.stderr)
    modes = ["on-w0", "on-w2", "on-w4", "off"] if args.source == "folder" else ["on", "off"]
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                runs[mode].append(measure(spec, mode, work))
                m = runs[mode][-1]
                print(f"round {r + 1} stream={mode}: epoch {m['epoch_seconds']:.1f} s, peak RSS "
                      f"{m['peak_rss_bytes'] / 2**30:.2f} GiB, test loss {m['test_loss']:.3f}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)  # run folders and the decoded cache
    train_items = args.items - int(round(args.items * 0.1))  # the 10 % test holdout; no validation split
    rate = {mode: statistics.median(train_items / m["epoch_seconds"] for m in runs[mode]) for mode in runs}
    streamed = [mode for mode in modes if mode != "off"]
    ratio = {mode: rate[mode] / rate["off"] for mode in streamed}
    per_round = {mode: [o["epoch_seconds"] / m["epoch_seconds"]
                        for m, o in zip(runs[mode], runs["off"])] for mode in streamed}
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": args.source, "items": args.items,
              "train_items": train_items, "bytes_on_disk": size, "build_seconds": build_seconds, "prepare": prepared,
              "rounds": args.rounds, "runs": runs, "items_per_second": rate, "streamed_over_in_memory": ratio,
              "streamed_over_in_memory_per_round": per_round,
              "peak_rss_gib": {mode: max(m["peak_rss_bytes"] for m in runs[mode]) / 2**30 for mode in runs},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    what = {"npy": "MNIST-sized items in an npy", "parquet": f"Parquet rows x {FEATURES} features",
            "folder": "28x28 PNGs in a folder"}[args.source]
    print(f"\n**One epoch over {args.items:,} {what} ({size / 1e9:.2f} GB on disk), median of "
          f"{args.rounds} rounds**\n")
    print("| data | items/s | of in-memory (per round) | peak RSS | test loss |")
    print("| --- | --- | --- | --- | --- |")
    for mode in modes:
        label = "in memory (--stream off)" if mode == "off" else "streamed (--stream on" + (
            f", --workers {mode.partition('-w')[2]})" if "-w" in mode else ")")
        share = "-" if mode == "off" else f"{ratio[mode]:.2f} ({', '.join(f'{x:.2f}' for x in per_round[mode])})"
        print(f"| {label} | {rate[mode]:,.0f} | {share} | {report['peak_rss_gib'][mode]:.2f} GiB | "
              f"{runs[mode][-1]['test_loss']:.3f} |")


if __name__ == "__main__":
    main()
