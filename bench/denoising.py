"""Denoising on MNIST: PSNR of the noisy test images, of a 3x3 median filter, and of a denoising model.

    python bench/denoising.py [--model ae] [--epochs 10]

Two corruptions of the 10,000 test images: Gaussian noise sigma = 0.5 (clipped to [0, 1]) and 50 %
masking. For each, a model is trained with the same corruption on the training split (clean target).
PSNR = 10 log10(1 / MSE) per image on [0, 1] pixels, averaged over the test set. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import median_filter

import vaekit
from vaekit.data.transforms import corrupt

HERE = Path(__file__).resolve().parent


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--model", default="ae")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(HERE / "results" / "denoising.json"))
    args = parser.parse_args()
    clean = vaekit.load_data("mnist:test", vaekit.DataConfig(data_dir=args.data_dir)).as_float()  # (N, 1, 28, 28)
    rows = {}
    for noise in ("gaussian:0.5", "masking:0.5"):
        noisy = corrupt(torch.from_numpy(clean), noise, torch.Generator().manual_seed(0)).numpy()
        median = median_filter(noisy, size=(1, 1, 3, 3), mode="nearest")
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            vaekit.train(dataset="mnist", data_dir=args.data_dir, model=args.model, noise=noise, epochs=args.epochs,
                         run_dir=run, progress=False, pictures=False,
                         batch_size=128, lr=1e-3, lr_schedule="constant")  # the settings of bench/README.md's figures
            np.savez(Path(tmp) / "noisy.npz", x=noisy)
            _, denoised = vaekit.denoise(run, f"npz:{Path(tmp) / 'noisy.npz'}")
        rows[noise] = {"noisy": psnr(noisy, clean), "median3x3": psnr(median, clean), args.model: psnr(denoised, clean)}
        r = rows[noise]
        print(f"{noise:14s} PSNR dB: noisy {r['noisy']:.2f}  median 3x3 {r['median3x3']:.2f}  "
              f"denoising {args.model} {r[args.model]:.2f}  (model - median: {r[args.model] - r['median3x3']:+.2f} dB)",
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "psnr_db": rows}, indent=2))


if __name__ == "__main__":
    main()
