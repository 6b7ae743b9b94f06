"""Dimensionality reduction on MNIST: test reconstruction MSE of the AE and the VAE at 2, 8 and 20 latent
dims against PCA with as many components (scikit-learn), fitted on the same training split.

    python bench/dim_reduction.py [--epochs 20]

MSE is per pixel on [0, 1] images, from each model's deterministic code (the VAE's posterior mean).
Target: AE MSE <= 0.6 x PCA's at 20 dims. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sklearn.decomposition import PCA

import vaekit

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", default="512,256")
    parser.add_argument("--dims", default="2,8,20")
    parser.add_argument("--out", default=str(HERE / "results" / "dim_reduction.json"))
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    splits = vaekit.load_splits(vaekit.DataConfig(dataset="mnist", data_dir=args.data_dir))
    train = splits.train.as_float().reshape(len(splits.train), -1)
    test = splits.test.as_float().reshape(len(splits.test), -1)
    rows = {}
    for dim in (int(d) for d in args.dims.split(",")):
        pca = PCA(n_components=dim, random_state=0).fit(train)
        rows[dim] = {"pca": float(((pca.inverse_transform(pca.transform(test)) - test) ** 2).mean())}
        for model in ("ae", "vae"):
            with tempfile.TemporaryDirectory() as tmp:
                run = Path(tmp) / "run"
                vaekit.train(dataset="mnist", data_dir=args.data_dir, model=model, hidden=hidden, latent_dim=dim,
                             epochs=args.epochs, run_dir=run, progress=False, pictures=False,
                             batch_size=128, lr=1e-3, lr_schedule="constant")  # bench/README.md's figures' settings
                codes = vaekit.encode(run)  # test split
                recon = vaekit.decode(run, codes).reshape(len(test), -1)
            rows[dim][model] = float(((recon - test) ** 2).mean())
        r = rows[dim]
        print(f"{dim:2d} dims: test MSE  PCA {r['pca']:.5f}  AE {r['ae']:.5f} ({r['ae'] / r['pca']:.2f} x PCA)  "
              f"VAE {r['vae']:.5f} ({r['vae'] / r['pca']:.2f} x PCA)", flush=True)
    print("target: AE <= 0.6 x PCA at 20 dims")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "test_mse": rows}, indent=2))


if __name__ == "__main__":
    main()
