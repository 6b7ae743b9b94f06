"""Does weight normalisation (Salimans & Kingma 2016) help the HVAE + VampPrior? Issue #17 lists it among the
papers' training details, to be kept only if measured to help.

    python bench/weight_norm.py [--epochs 40] [--seeds 0] [--k 500] [--nll-items 2000] [--data-dir D]

The two arms, the ``hvae-vampprior-b500`` preset with and without ``--weight-norm``, train side by side (one
process and one thread each, so both see the same machine) for the same number of epochs on dynamically
binarized MNIST, the lr's cosine ending with the epochs and the KL warm-up a quarter of them, each seed's pair
with the same seed. Each arm's best-validation epoch is then scored on the same seeded test subset: -ELBO and
the importance-sampled NLL with k samples. Prints, per seed, the NLL difference (weight norm - plain; negative
means weight norm helps) and the ratio of the arms' median epoch times, and writes bench/results/weight_norm.json.

A matched-epoch probe, not the 60-minute rows of ``nll_binarized.py``: it measures what weight normalisation
does to the optimisation per epoch, and what an epoch costs, from which the hour's figure follows.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ARMS = {"plain": False, "weight-norm": True}


def train_and_score(arm: str, seed: int, args: argparse.Namespace) -> dict:
    import torch

    import vaekit

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        result = vaekit.train("hvae-vampprior-b500", dataset="mnist", data_dir=args.data_dir, binarize="dynamic",
                              epochs=args.epochs, kl_warmup=max(1, args.epochs // 4), seed=seed,
                              weight_norm=ARMS[arm], run_dir=run, progress=False, pictures=False)
        x = vaekit.input_data(run).x
        n = min(len(x), args.nll_items)
        x = x[np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))]  # the same items for each arm
        np.save(Path(tmp) / "test.npy", x)
        started = time.perf_counter()
        ev = vaekit.evaluate(run, f"npy:{Path(tmp) / 'test.npy'}", nll=True, k=args.k, precision="fp32")
        metrics = result.metrics
        return {"arm": arm, "seed": seed, "epochs": len(metrics),
                "best_epoch": [m["epoch"] for m in metrics if m["best"]][-1],
                "best_val_loss": min(m["val_loss"] for m in metrics),
                "median_epoch_seconds": statistics.median(m["seconds"] for m in metrics[1:]),
                "test_loss": ev["loss"], "nll": ev["nll"], "nll_stderr": ev["nll_stderr"], "k": args.k, "n": ev["n"],
                "eval_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0", help="comma-separated; each seed's two arms run side by side")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--nll-items", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "results" / "weight_norm.json"))
    args = parser.parse_args()
    rows = []
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per arm: its own torch thread pool
    for seed in (int(s) for s in args.seeds.split(",")):
        with context.Pool(len(ARMS)) as pool:
            pair = pool.starmap(train_and_score, [(arm, seed, args) for arm in ARMS])
        plain, normed = pair
        for r in pair:
            print(f"seed {seed} {r['arm']:11s} {r['epochs']} epochs ({r['median_epoch_seconds']:.1f} s each, best "
                  f"{r['best_epoch']}): val -ELBO {r['best_val_loss']:.2f}, test -ELBO {r['test_loss']:.2f}, "
                  f"NLL {r['nll']:.2f} +- {r['nll_stderr']:.2f} (k={r['k']}, {r['n']} items)", flush=True)
        print(f"seed {seed}: weight norm - plain: NLL {normed['nll'] - plain['nll']:+.2f} nats, val -ELBO "
              f"{normed['best_val_loss'] - plain['best_val_loss']:+.2f}; epoch time x"
              f"{normed['median_epoch_seconds'] / plain['median_epoch_seconds']:.2f}", flush=True)
        rows += pair
        out = Path(args.out)  # after each seed, so a stopped run keeps its finished pairs
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
