"""Few labels (issue #15): test error over all 10,000 test images when only N training labels are kept (spread
evenly over the classes, drawn with seeds 0..draws-1; the other training images are used without labels), for
vaekit's semi-supervised VAEs beside baselines measured in the same run and the published figures.

    python bench/few_labels.py [--dataset mnist] [--labels 100 600 1000 3000] [--draws 5] [--minutes 30]
                               [--methods logreg label-spreading self-training m2 m2+consistency
                                          m2+consistency+conv m1+m2]
                               [--first-draw 0] [--epochs E] [--out FILE]
    python bench/few_labels.py --merge A.json B.json ... [--out FILE]   # one table from runs split over processes

Methods:
  logreg           scikit-learn LogisticRegression on the N labelled images alone (pixels in [0, 1])
  label-spreading  sklearn.semi_supervised.LabelSpreading (kNN kernel, 10 neighbours) on 50 PCA components of
                   every training image (PCA fitted on all of them, unlabelled included)
  self-training    sklearn.semi_supervised.SelfTrainingClassifier over LogisticRegression on the same PCA features
  m2               `vaekit train --model m2 --labels N --labels-seed D` (Kingma et al. 2014's M2: MLP 500 hidden,
                   latent 50), trained for --minutes (its time budget, --max-minutes) at a constant lr 1e-3, or,
                   with --epochs E, E epochs with a cosine decay of the lr (--minutes stays a cap)
  m2+consistency   the same M2 with `--consistency C` (default 1): FixMatch's term (Sohn et al. 2020) on q(y|x),
                   a strongly augmented view of each image learns its label or the confident class of a weak view
  m2+consistency+conv  the same with `--classifier-arch conv`: q(y|x) is a conv net (stride-2 convs of 32 and 64
                   channels, then 500 hidden) beside the MLP VAE
  m1+m2            vaekit.SemiSupervisedVAE(m1_latent_dim=50): M1 (VAE, 500 hidden, latent 50) on all training
                   images, then M2 on 10 draws z1 ~ q(z1|x) of each image in the dims M1 uses; --m1m2-epochs
                   epochs for each part (M2's over the draws: epochs / 10 passes)

Writes bench/results/few_labels_<dataset>.json and prints a markdown table (mean +- std over draws, %).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaekit
from vaekit.data import keep_labels
from vaekit.latent import class_predictions, confusion_counts

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
# Test error (%) on MNIST with 100 / 600 / 1000 / 3000 labels. Kingma et al. 2014, table 1; Rasmus et al. 2015
# (ladder networks, 100 labels); Maaloe et al. 2016 (ADGM, 100 labels).
PUBLISHED = {
    "M1+TSVM (Kingma et al. 2014)": {100: "11.82 +- 0.25", 600: "5.72 +- 0.05", 1000: "4.24 +- 0.07",
                                     3000: "3.49 +- 0.04"},
    "M2 (Kingma et al. 2014)": {100: "11.97 +- 1.71", 600: "4.94 +- 0.13", 1000: "3.60 +- 0.56",
                                3000: "3.92 +- 0.63"},
    "M1+M2 (Kingma et al. 2014)": {100: "3.33 +- 0.14", 600: "2.59 +- 0.05", 1000: "2.40 +- 0.02",
                                   3000: "2.18 +- 0.04"},
    "Ladder network (Rasmus et al. 2015)": {100: "1.06 +- 0.37"},
    "ADGM (Maaloe et al. 2016)": {100: "0.96 +- 0.02"},
}
METHODS = ["logreg", "label-spreading", "self-training", "m2", "m2+consistency", "m2+consistency+conv", "m1+m2"]


def pca_features(x_train: np.ndarray, x_test: np.ndarray, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n, random_state=0).fit(x_train)
    return pca.transform(x_train), pca.transform(x_test)


def run_method(method: str, args, n_labels: int, draw: int, data: dict) -> dict:
    """Test error (%) and seconds of one method for one labelled draw."""
    from sklearn.linear_model import LogisticRegression

    y_few = data["y_few"]
    labelled = y_few >= 0
    started, epochs, curve, confusion = time.perf_counter(), 0, [], []
    if method == "logreg":
        model = LogisticRegression(max_iter=5000).fit(data["x_train"][labelled], y_few[labelled])
        accuracy = model.score(data["x_test"], data["y_test"])
    elif method == "label-spreading":
        from sklearn.semi_supervised import LabelSpreading

        model = LabelSpreading(kernel="knn", n_neighbors=10, max_iter=100).fit(data["pca_train"], y_few)
        accuracy = model.score(data["pca_test"], data["y_test"])
    elif method == "self-training":
        from sklearn.semi_supervised import SelfTrainingClassifier

        model = SelfTrainingClassifier(LogisticRegression(max_iter=2000), threshold=0.9, max_iter=10)
        accuracy = model.fit(data["pca_train"], y_few).score(data["pca_test"], data["y_test"])
    elif method in ("m2", "m2+consistency", "m2+consistency+conv"):
        with tempfile.TemporaryDirectory() as tmp:
            result = vaekit.train(dataset=args.dataset, data_dir=str(args.data_dir / args.dataset), model="m2",
                                  labels=n_labels, labels_seed=draw, hidden=(500,), latent_dim=50,
                                  epochs=args.epochs or 10_000, max_minutes=args.minutes,
                                  batch_size=args.batch_size, lr=1e-3,
                                  lr_schedule="cosine" if args.epochs else "constant", seed=draw,
                                  run_dir=Path(tmp) / "run", progress=False,
                                  consistency=args.consistency if method != "m2" else 0.0,
                                  classifier_arch="conv" if method.endswith("+conv") else None,
                                  pictures=False)
            accuracy, epochs = result.test_accuracy, len(result.metrics)
            curve = [round(m["val_accuracy"], 4) for m in result.metrics if "val_accuracy" in m]
            predicted = class_predictions(result.model, torch.from_numpy(data["images_test"]))
            confusion = confusion_counts(data["y_test"], predicted, 10).tolist()  # rows: true, columns: predicted
    elif method == "m1+m2":
        model = vaekit.SemiSupervisedVAE(m1_latent_dim=50, hidden=(500,), latent_dim=50, epochs=args.m1m2_epochs,
                                         batch_size=args.batch_size, lr=1e-3, lr_schedule="constant",
                                         random_state=draw, n_threads=torch.get_num_threads())
        model.fit(data["images_train"], y_few)
        accuracy = model.score(data["images_test"], data["y_test"])
    else:
        raise ValueError(method)
    return {"draw": draw, "error": 100 * (1 - accuracy), "seconds": time.perf_counter() - started,
            **({"epochs": epochs, "val_accuracy": curve, "confusion": confusion} if method.startswith("m2") else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--first-draw", type=int, default=0, help="draws first-draw .. first-draw + draws - 1, so "
                                                                  "processes can split them (see --merge)")
    parser.add_argument("--consistency", type=float, default=1.0, help="m2+consistency's --consistency")
    parser.add_argument("--merge", type=Path, nargs="+", help="print one table from these result files")
    parser.add_argument("--minutes", type=float, default=30.0, help="m2's training budget per model")
    parser.add_argument("--epochs", type=int, default=None,
                        help="m2: this many epochs with the lr's cosine decay (2 epochs of warm-up) instead of a "
                             "constant lr until --minutes ends; --minutes stays a cap")
    parser.add_argument("--m1m2-epochs", type=int, default=100, help="epochs of each part of m1+m2")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    out = args.out or HERE / "results" / f"few_labels_{args.dataset}.json"

    cfg = vaekit.DataConfig(dataset=args.dataset, data_dir=str(args.data_dir / args.dataset))
    splits = vaekit.load_splits(cfg)  # the CLI's split: 10 % of the training images held out for validation
    train, test = splits.train, splits.test
    images_train, images_test = train.as_float(), test.as_float()  # (N, 1, 28, 28) in [0, 1]
    x_train, x_test = images_train.reshape(len(train), -1), images_test.reshape(len(test), -1)
    pca_train, pca_test = pca_features(x_train, x_test)
    results: dict = {}
    started = time.perf_counter()
    for n in args.labels:
        for method in args.methods:
            runs = []
            for draw in range(args.first_draw, args.first_draw + args.draws):
                y_few = keep_labels(train, n, seed=draw).y
                data = dict(x_train=x_train, x_test=x_test, images_train=images_train, images_test=images_test,
                            pca_train=pca_train, pca_test=pca_test, y_test=test.y, y_few=y_few)
                runs.append(run_method(method, args, n, draw, data))
                print(f"{args.dataset} {n} labels, draw {draw}, {method}: error {runs[-1]['error']:.2f} % "
                      f"({runs[-1]['seconds']:.0f} s)", flush=True)
            results.setdefault(str(n), {})[method] = summarise(runs)
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "dataset": args.dataset, "draws": args.draws,
              "first_draw": args.first_draw, "labels": args.labels, "minutes": args.minutes,
              "epochs": args.epochs,
              "consistency": args.consistency, "m1m2_epochs": args.m1m2_epochs,
              "batch_size": args.batch_size, "train_items": len(train), "test_items": len(test),
              "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__},
              "results": results, "published_mnist": PUBLISHED, "total_seconds": time.perf_counter() - started}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_table(args.dataset, results)
    print(f"\nwrote {out} ({report['total_seconds']:.0f} s)")


def summarise(runs: list[dict]) -> dict:
    errors = [r["error"] for r in runs]
    return {"runs": runs, "mean": statistics.fmean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else 0.0}


def merge(paths: list[Path], out: Path | None = None) -> None:
    """One table from result files of one dataset: each method's runs pooled over the files (a later file's
    run of the same draw replaces an earlier one's); with ``out``, also the pooled results as one file that
    names its sources and their settings."""
    reports = [json.loads(p.read_text()) for p in paths]
    pooled: dict = {}
    for report in reports:
        for n, methods in report["results"].items():
            for method, result in methods.items():
                by_draw = pooled.setdefault(n, {}).setdefault(method, {})
                for i, run in enumerate(result["runs"]):
                    by_draw[run.get("draw", i)] = {**run, "file": run.get("file", report.get("date"))}
    results = {n: {m: summarise([runs[d] for d in sorted(runs)]) for m, runs in methods.items()}
               for n, methods in pooled.items()}
    print_table(reports[0]["dataset"], results)
    if out is not None:
        settings = ("date", "draws", "first_draw", "labels", "minutes", "epochs", "consistency", "m1m2_epochs",
                    "batch_size", "machine", "total_seconds")
        sources = [source for p, report in zip(paths, reports) for source in report.get("merged_from") or [
            {"file": p.name, "methods": sorted({m for r in report["results"].values() for m in r}),
             **{k: report[k] for k in settings if k in report}}]]  # a merged file brings its own sources
        kept = {run["file"] for methods in results.values() for result in methods.values() for run in result["runs"]}
        sources = [source for source in sources if source.get("date") in kept]  # not those whose runs were replaced
        out.write_text(json.dumps({"dataset": reports[0]["dataset"], "merged_from": sources, "results": results,
                                   "published_mnist": PUBLISHED}, indent=1))
        print(f"\nwrote {out}")


def print_table(dataset: str, results: dict) -> None:
    labels = sorted(results, key=int)
    methods = [m for m in METHODS if any(m in results[n] for n in labels)]
    print(f"\n**{dataset}: test error (%) over the test images, mean +- std over the draws (n)**\n")
    print("| method | " + " | ".join(f"{n} labels" for n in labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for method in methods:
        cells = [f"{r['mean']:.2f} +- {r['std']:.2f} ({len(r['runs'])})" if (r := results[n].get(method)) else "-"
                 for n in labels]
        print(f"| {method} (measured) | " + " | ".join(cells) + " |")
    if dataset == "mnist":
        for name, row in PUBLISHED.items():
            print(f"| {name} | " + " | ".join(row.get(int(n), "-") for n in labels) + " |")

if __name__ == "__main__":
    main()
