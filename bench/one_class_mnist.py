"""One-class MNIST (the protocol of Ruff et al. 2018, Deep SVDD): for each digit K, train on the training
images of K only, score all 10,000 test images, and report the AUROC of "not K" as the anomaly.

    python bench/one_class_mnist.py [--model vae] [--score elbo] [--classes 0-9]

Prints a table of the ten classes and their mean beside the published means (Ruff et al. 2018, table 1:
deep convolutional autoencoder 89.7, Deep SVDD 94.8) and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import vaekit

HERE = Path(__file__).resolve().parent
PUBLISHED = {"DCAE (Ruff et al. 2018)": 89.7, "Deep SVDD one-class (Ruff et al. 2018)": 94.8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--model", default="vae")
    parser.add_argument("--score", default="mse")
    parser.add_argument("--hidden", default="400")
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None, help="default: about 3,000 steps")
    parser.add_argument("--classes", default="0-9")
    parser.add_argument("--out", default=str(HERE / "results" / "one_class_mnist.json"))
    args = parser.parse_args()
    lo, _, hi = args.classes.partition("-")
    classes = range(int(lo), int(hi or lo) + 1)
    hidden = tuple(int(h) for h in args.hidden.split(","))

    rows = {}
    for k in classes:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            vaekit.train(dataset="mnist", data_dir=args.data_dir, model=args.model, hidden=hidden,
                         latent_dim=args.latent_dim, epochs=args.epochs, normal_class=k, run_dir=run,
                         progress=False, pictures=False,
                         batch_size=128, lr=1e-3, lr_schedule="constant")  # the settings of bench/README.md's figures
            found, items = vaekit.anomalies(run, score=args.score)
        rows[k] = {"auroc": 100 * found.auroc, "average_precision": 100 * found.average_precision,
                   "seconds": time.perf_counter() - started}
        print(f"class {k}: AUROC {rows[k]['auroc']:.1f}  AP {rows[k]['average_precision']:.1f}  "
              f"({rows[k]['seconds']:.0f} s)", flush=True)
    mean = float(np.mean([r["auroc"] for r in rows.values()]))
    print(f"\nOne-class MNIST, {args.model} {hidden}-{args.latent_dim}, score {args.score}: "
          f"AUROC (%) per normal class")
    print(" ".join(f"{k:>5d}" for k in rows) + "   mean")
    print(" ".join(f"{r['auroc']:5.1f}" for r in rows.values()) + f"   {mean:.1f}")
    for name, value in PUBLISHED.items():
        print(f"  published: {name}: mean {value}")
    print(f"vaekit mean {mean:.1f} (target >= 95.0)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "per_class": rows, "mean_auroc": mean,
                               "published": PUBLISHED}, indent=2))


if __name__ == "__main__":
    main()
