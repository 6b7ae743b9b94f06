"""Pictures and the HTML report of a run folder.

``make_pictures`` loads a run once and writes every picture that fits its data (image grids for
images; latent plot, curves and reconstruction error for tables), then ``write_report`` writes
``report.html``, which links the pictures by relative path so the folder can be moved.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import latent, plots, runs
from .anomaly import score_items
from .config import RunConfig
from .data import Splits, data_for_run, load_splits
from .errors import VaekitError
from .models import MODELS
from .runs import REPORT_FILE, SUMMARY_FILE, atomic_write
from .tensors import as_tensor, model_input

SETTINGS = "picture_settings"  # summary.json: the options each run-folder picture was last drawn with
CAPTIONS = {
    "samples.png": "New items decoded from the prior z ~ N(0, I) (for a plain AE: a Gaussian fitted to its codes).",
    "samples_by_class.png": "One row per class: items decoded from the same 10 draws of z (one per column) with "
                            "the row's class, p(x | y, z): the class sets the digit, z its style.",
    "samples_drawn.png": "Items drawn from the autoregressive likelihood at samples.png's 64 codes, each pixel "
                         "drawn given the ones drawn before it (raster order): the model's exact samples, where "
                         "samples.png shows each pixel's probability given the probabilities before it.",
    "reconstructions.png": "Test originals (top) above their reconstructions from the posterior mean (bottom).",
    "latent.png": "Posterior means of the test split.",
    "manifold.png": "Decoded images on a grid of the latent plane at Gaussian quantiles.",
    "interpolation.png": "Left and right: two test originals; between them, decoded points on the straight "
                         "line between their latent codes.",
    "denoising.png": "Corrupted test inputs (top), the model's output (middle), the clean originals (bottom).",
    "confusion.png": "The classifier q(y|x) on the test split: test items of each true class (row) by the class "
                     "it predicts (column); the errors are shaded on a scale of their own.",
    "curves.png": "Train and validation loss, reconstruction and KL per epoch.",
    "recon_error.png": "Reconstruction error (nats) of each test item.",
}


@dataclass
class LoadedRun:
    run_dir: Path
    model: torch.nn.Module
    cfg: RunConfig
    splits: Splits

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_image(self) -> bool:
        return len(self.cfg.model.input_shape) == 3

    def tensor(self, split: str) -> torch.Tensor:
        return as_tensor(getattr(self.splits, split), self.device)


def load_run(run_dir: str | Path, data_dir: str | Path | None = None) -> LoadedRun:
    from .tensors import pick_device

    model, cfg, _ = runs.load_model(run_dir, pick_device("auto"))
    return LoadedRun(Path(run_dir), model, cfg, load_splits(data_for_run(cfg.data, data_dir)))


def _decode(run: LoadedRun, codes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return run.model.decode_mean(torch.from_numpy(codes).to(run.device)).float().cpu().numpy()


def _require_images(run: LoadedRun, what: str) -> None:
    if not run.is_image:
        raise VaekitError(f"{run.run_dir}: {what} needs image data; this run was trained on vectors "
                          f"of shape {tuple(run.cfg.model.input_shape)}")


def plot_latent(run: LoadedRun, out: Path | None = None) -> dict:
    """``latent.png``: test posterior means (PCA to 2-D when L > 2), coloured by label; kNN accuracy (k=5)."""
    test_z = latent.posterior_means(run.model, run.tensor("test"))
    if test_z.shape[1] == 1:
        points, xlabel, ylabel = np.c_[test_z, np.zeros(len(test_z))], "z1", "(1-D latent)"
    elif test_z.shape[1] == 2:
        points, xlabel, ylabel = test_z, "z1", "z2"
    else:
        points, mean, axes = latent.pca_2d(test_z)
        var = latent.explained_variance(test_z)
        xlabel, ylabel = (f"PC{i + 1} of the {test_z.shape[1]}-D posterior means ({v:.0%} of variance)"
                          for i, v in enumerate(var[:2]))
    info: dict = {"latent_dim": int(test_z.shape[1])}
    test_y = run.splits.test.y
    title = f"{run.cfg.data.dataset}: test posterior means"
    if test_y is not None and run.splits.train.y is not None:
        train_z = latent.posterior_means(run.model, run.tensor("train"))
        info.update(latent.probes(train_z, run.splits.train.y, test_z, test_y))
        info["knn5_accuracy"] = info["knn_probe_accuracy"]  # the name earlier runs' summaries use
        info["knn5_space"] = f"{test_z.shape[1]}-D posterior means"
        title += f" (5-NN label accuracy {info['knn5_accuracy']:.3f})"
    png = plots.scatter_png(points, test_y, run.splits.test.class_names, xlabel, ylabel, title)
    atomic_write(out or run.run_dir / "latent.png", png)
    return info


def plot_manifold(run: LoadedRun, n: int = 20, out: Path | None = None) -> dict:
    """``manifold.png``: an n x n grid of decoded codes at Gaussian quantiles of two latent dims.

    For L > 2 the two dims with the largest mean KL (the most used) are scanned, the others held at
    the mean of the test posterior means.
    """
    _require_images(run, "a manifold grid")
    if n < 2:
        raise VaekitError(f"manifold grid size must be at least 2, got {n}")
    L = run.cfg.model.latent_dim
    if L == 1:
        raise VaekitError(f"{run.run_dir}: a manifold grid needs a latent dim of at least 2")
    x = run.tensor("test")
    codes = latent.posterior_means(run.model, x)
    with torch.no_grad():  # each dim scanned over its prior's spread (an AE's: its codes')
        spread = run.model.code_spread(torch.from_numpy(codes)).cpu().numpy()
    if not run.model.variational:  # no prior: dims ranked by the spread of their codes
        use, what = codes.var(0), "variance"
        base = codes.mean(0)
    else:
        use, what = (latent.kl_per_dim(run.model, x) if L > 2 else np.ones(2)), "KL"
        base = codes.mean(0) if L > 2 else np.zeros(2, np.float32)
    a, b = (0, 1) if L == 2 else (int(d) for d in np.argsort(use)[::-1][:2])
    dims = (a, b)
    how = f"z{a + 1} (columns) and z{b + 1} (rows)"
    if L > 2:
        how += (f", the two most used dims ({what} {use[a]:.2f}, {use[b]:.2f}); the other dims at the mean "
                "posterior mean")
    images = _decode(run, latent.manifold_codes(n, base, dims, (float(spread[a]), float(spread[b]))))
    plots.save_grid(out or run.run_dir / "manifold.png", images, n)
    if out is None:
        _remember(run.run_dir, "manifold.png", {"n": n})
    return {"manifold_dims": list(dims), "manifold_scan": how, "manifold_n": n}


def plot_interpolation(run: LoadedRun, i: int | None = None, j: int | None = None, steps: int = 10,
                       out: Path | None = None, from_class: str | int | None = None,
                       to_class: str | int | None = None) -> dict:
    """``interpolation.png``: test item i, ``steps`` decoded points from z_i to z_j, test item j.

    The items are given by index in the test split (defaults 0 and 1) or by class: the first test item with
    that label (an integer, or a class name such as "Sneaker")."""
    _require_images(run, "an interpolation")
    i = _pick_item(run, i, from_class, 0, "from")
    j = _pick_item(run, j, to_class, 1, "to")
    n = len(run.splits.test)
    for k in (i, j):
        if not 0 <= k < n:
            raise VaekitError(f"test item {k} does not exist; the test split has {n} items (0..{n - 1})")
    if steps < 2:
        raise VaekitError(f"interpolation needs at least 2 steps, got {steps}")
    x = run.tensor("test")[[i, j]]
    z = latent.posterior_means(run.model, x)
    path = _decode(run, latent.interpolate(z[0], z[1], steps))
    originals = model_input(x).float().cpu().numpy()
    plots.save_grid(out or run.run_dir / "interpolation.png", np.concatenate([originals[:1], path, originals[1:]]),
                    steps + 2)
    if out is None:
        _remember(run.run_dir, "interpolation.png", {"i": i, "j": j, "steps": steps})
    return {"interpolation": [i, j, steps]}


def _pick_item(run: LoadedRun, index: int | None, label: str | int | None, default: int, end: str) -> int:
    """A test item's index: ``index``, else the first item of class ``label``, else ``default``."""
    if label is None:
        return default if index is None else index
    test = run.splits.test
    if test.y is None:
        raise VaekitError(f"{test.name}: has no labels, so --{end}-class cannot pick an item; use --{end}-index N")
    names = test.class_names or ()
    text = str(label)
    k = names.index(text) if text in names else (int(text) if text.lstrip("-").isdigit() else None)
    hits = np.flatnonzero(test.y == k) if k is not None else []
    if len(hits) == 0:
        classes = ", ".join(f"{c} ({names[c]})" if c < len(names) and names[c] != str(c) else str(c) for c in sorted(set(test.y.tolist())))
        raise VaekitError(f"{test.name}: no test item of class {text!r}; classes are {classes}")
    return int(hits[0])


def _remember(run_dir: Path, name: str, settings: dict) -> None:
    """Keep the options a run-folder picture was drawn with, so ``report`` redraws it the same way."""
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.exists() else {}
    _update_summary(run_dir, {SETTINGS: {**summary.get(SETTINGS, {}), name: settings}})


def _shown_test_items(run: LoadedRun, n: int = 8) -> torch.Tensor:
    """n test items for a picture, drawn at random (seeded): the split keeps file order, so its first items
    can all be one class (an image folder's first sub-folder)."""
    test = run.tensor("test")
    index = np.sort(np.random.default_rng(0).choice(len(test), min(n, len(test)), replace=False))
    return model_input(test[torch.from_numpy(index).to(test.device)])


def plot_grids(run: LoadedRun) -> None:
    """``samples.png`` (8x8 from the prior; for an autoregressive likelihood also ``samples_drawn.png``, values
    drawn) and ``reconstructions.png`` (8 test originals above reconstructions)."""
    gen = torch.Generator(device=run.device).manual_seed(0)
    with torch.no_grad():
        # from the model's prior (an AE's fitted Gaussian), through every stochastic layer
        plots.save_grid(run.run_dir / "samples.png", run.model.sample(64, gen).float().cpu().numpy(), 8)
        if run.model.likelihood.sequential_mean:  # an autoregressive likelihood: its mean is only approximated
            same_codes = torch.Generator(device=run.device).manual_seed(0)  # samples.png's codes, then the pixels
            plots.save_grid(run.run_dir / "samples_drawn.png",
                            run.model.sample(64, same_codes, draw=True).float().cpu().numpy(), 8)
        if run.model.uses_labels:  # a conditional model: the same z decoded with every class
            k = run.cfg.model.n_classes
            z = run.model.sample_prior(10, gen).repeat(k, 1)  # (K * 10, L), row-major: class, then draw
            labels = torch.arange(k, device=run.device).repeat_interleave(10)
            plots.save_grid(run.run_dir / "samples_by_class.png",
                            run.model.decode_class(z, labels).float().cpu().numpy(), 10)
        x = _shown_test_items(run)
        recon = run.model.reconstruct(x).float().cpu().numpy()
    plots.save_grid(run.run_dir / "reconstructions.png", np.concatenate([x.float().cpu().numpy(), recon]), len(x))


@torch.no_grad()
def plot_denoising(run: LoadedRun) -> dict:
    """``denoising.png``: 8 test items corrupted with the run's noise, denoised, and clean."""
    from .data.transforms import corrupt

    clean = _shown_test_items(run)
    noisy = corrupt(clean, run.cfg.data.noise, torch.Generator(device=run.device).manual_seed(0))
    out = run.model.reconstruct(noisy).float()
    plots.save_grid(run.run_dir / "denoising.png",
                    torch.cat([noisy.float(), out, clean.float()]).cpu().numpy(), len(clean))
    return {"denoising_noise": run.cfg.data.noise}


@torch.no_grad()
def plot_recon_error(run: LoadedRun) -> dict:
    """``recon_error.png``: histogram of each test item's reconstruction error (for tabular runs)."""
    err = score_items(run.model, run.tensor("test"), "recon")  # -log p(x | code), in batches
    atomic_write(run.run_dir / "recon_error.png",
                 plots.histogram_png(err, f"{run.cfg.data.dataset}: test reconstruction error", "nats per item"))
    return {"test_recon_error_median": float(np.median(err))}


def plot_confusion(run: LoadedRun) -> dict:
    """``confusion.png`` for a model of labels: its classifier's test predictions against the test labels; the
    counts also go to summary.json (rows: true classes, columns: predicted)."""
    test = run.splits.test
    k = run.cfg.model.n_classes
    known = test.y >= 0
    predicted = latent.class_predictions(run.model, run.tensor("test"))[known]
    counts = latent.confusion_counts(test.y[known], predicted, k)
    names = tuple(test.class_names) if test.class_names and len(test.class_names) == k else tuple(map(str, range(k)))
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    atomic_write(run.run_dir / "confusion.png",
                 plots.confusion_png(counts, names, f"{run.cfg.data.dataset}: test accuracy {accuracy:.4f}"))
    return {"test_confusion": counts.tolist()}


def make_pictures(run_dir: str | Path, data_dir: str | Path | None = None) -> dict:
    """Write every picture that fits the run's data and return the numbers they produced.

    A picture the user redrew with other options (``vaekit plot manifold RUN --n 15``) is redrawn with those."""
    run = load_run(run_dir, data_dir)
    path = run.run_dir / SUMMARY_FILE
    settings = (json.loads(path.read_text()) if path.exists() else {}).get(SETTINGS, {})
    info: dict = {}
    metrics = runs.read_metrics(run.run_dir)
    if metrics:
        atomic_write(run.run_dir / "curves.png", plots.curves_png(metrics))
    if len(run.splits.test):
        info.update(plot_latent(run))
        if run.model.uses_labels and run.splits.test.y is not None:
            info.update(plot_confusion(run))
        if run.is_image:
            plot_grids(run)
            if run.cfg.data.noise:
                info.update(plot_denoising(run))
            if run.cfg.model.latent_dim >= 2:
                info.update(plot_manifold(run, **settings.get("manifold.png", {})))
            if len(run.splits.test) >= 2:
                info.update(plot_interpolation(run, **settings.get("interpolation.png", {})))
        else:
            info.update(plot_recon_error(run))
    _update_summary(run.run_dir, {"pictures": info})
    return info


def _update_summary(run_dir: Path, extra: dict) -> None:
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.exists() else {}
    runs.write_json(path, {**summary, **extra})


PIXEL_GRIDS = {"samples.png", "samples_drawn.png", "reconstructions.png", "manifold.png", "interpolation.png",
               "denoising.png"}
HALF_WIDTH, FULL_WIDTH = 560, 1120  # px: a picture in one of two grid columns, or across the page


def _figure(run_dir: Path, name: str, caption: str) -> str:
    """One picture for the report. Image grids are shown at a whole multiple of their size (nearest-neighbour,
    so 8x8 digits stay crisp): at least doubled in a grid column, or across the page when that does not fit."""
    from PIL import Image

    with Image.open(run_dir / name) as im:
        w, h = im.size
    attrs, wide = "", w > HALF_WIDTH
    if name in PIXEL_GRIDS:
        k = min(4, HALF_WIDTH // w)
        wide = k < 2
        k = max(1, min(4, FULL_WIDTH // w)) if wide else k
        attrs = f' class="px" width="{w * k}" height="{h * k}"'
    esc = html.escape
    return (f'<figure{" class=wide" if wide else ""}><img src="{name}" alt="{esc(name)}"{attrs}>'
            f"<figcaption><b>{esc(name)}</b>: {esc(caption)}</figcaption></figure>")


def _epoch_rows(metrics: list[dict], head: list[str], best: int | None) -> str:
    """The per-epoch table: every epoch up to 30, else the first 10, the best and the last 20, with each gap
    marked in a row of its own."""
    esc = html.escape
    n = len(metrics)
    keep = set(range(n)) if n <= 30 else set(range(10)) | set(range(n - 20, n)) | {
        k for k, m in enumerate(metrics) if m.get("epoch") == best}
    rows, previous = [], None
    for k in sorted(keep):
        m = metrics[k]
        if previous is not None and k > previous + 1:
            first, last = metrics[previous + 1]["epoch"], metrics[k - 1]["epoch"]
            rows.append(f'<tr class="gap"><td colspan="{len(head)}">&#8942; epochs {first}-{last} not shown '
                        f"({last - first + 1} rows; every epoch is in metrics.jsonl) &#8942;</td></tr>")
        cells = "".join(f"<td>{m[h]:.3f}</td>" if isinstance(m.get(h), float) else f"<td>{esc(str(m.get(h, '')))}</td>"
                        for h in head)
        if m.get("epoch") == best:
            rows.append(f'<tr class="best">{cells.replace("</td>", " &#9733;</td>", 1)}</tr>')
        else:
            rows.append(f"<tr>{cells}</tr>")
        previous = k
    return "\n".join(rows)


def write_report(run_dir: str | Path) -> Path:
    """``report.html``: config, final metrics, timings and every picture in the folder (relative links)."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / runs.CONFIG_FILE).read_text())
    summary = json.loads((run_dir / SUMMARY_FILE).read_text()) if (run_dir / SUMMARY_FILE).exists() else {}
    metrics = runs.read_metrics(run_dir)
    esc = html.escape
    rows = [("dataset", cfg["data"]["dataset"]), ("model", f"{cfg['model']['model']}, hidden "
            f"{cfg['model']['hidden']}, latent {cfg['model']['latent_dim']}, {cfg['model']['likelihood']} likelihood")]
    for key, value in (summary.get("test") or {}).items():
        rows.append((f"test {key} (nats per item)", f"{value:.3f}"))
    pictures = summary.get("pictures", {})
    if "test_accuracy" in summary:
        rows.append(("test accuracy of the classifier q(y|x)", f"{summary['test_accuracy']:.4f} "
                     f"(trained with {cfg['data'].get('labels') or 'all'} labels)"))
    if "linear_probe_accuracy" in pictures:
        rows.append(("linear probe of the latent means", f"{pictures['linear_probe_accuracy']:.4f} test accuracy "
                     f"(logistic regression on the codes of {pictures['probe_labels']} labelled training items)"))
    if "knn5_accuracy" in pictures:
        rows.append(("5-NN label accuracy from the latent means", f"{pictures['knn5_accuracy']:.3f} "
                     f"({pictures['knn5_space']}; fit on the {pictures.get('probe_labels', 'all')} labelled "
                     "training items, scored on test)"))
    if "manifold_scan" in pictures:
        rows.append(("manifold scans", pictures["manifold_scan"]))
    # without a validation split (--validation train, --val-fraction 0) every epoch counts as the best: the last is kept
    held_out = any("val_loss" in m for m in metrics)
    chosen_by = "best validation loss" if held_out else "the last: no validation split"
    for key, label in (("epochs", "epochs"), ("best_epoch", f"epoch of the saved model ({chosen_by})"),
                       ("wall_seconds", "training wall time (s)"),
                       ("mean_epoch_seconds", "mean epoch time (s)"), ("device", "device"), ("torch", "torch")):
        if summary.get(key) is not None:
            value = summary[key]
            rows.append((label, f"{value:.3f}" if isinstance(value, float) else str(value)))
    if machine := summary.get("machine"):  # the times above depend on it
        rows.append(("machine", f"{machine['cpu']} ({'native bf16' if machine['cpu_native_bf16'] else 'no native bf16'}"
                                f", {machine['threads']} torch threads)"
                                + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")))
    table = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    captions = dict(CAPTIONS)
    if not held_out:
        captions["curves.png"] = "Train loss, reconstruction and KL per epoch (no validation split)."
    if MODELS[cfg["model"]["model"]].uses_labels:  # a model of labels decodes z with a class; here none is given
        for name in ("samples.png", "manifold.png", "interpolation.png"):
            captions[name] += (" This model decodes z with a class: with none given, with the uniform mixture of "
                               "all classes (samples_by_class.png shows each class).")
    if "interpolation" in pictures:
        i, j, steps = pictures["interpolation"]
        captions["interpolation.png"] += f" Test items {i} and {j}, {steps} steps."
    figures = "\n".join(_figure(run_dir, name, caption) for name, caption in captions.items()
                        if (run_dir / name).is_file())
    head = ["epoch", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl",
            *(["val_accuracy"] if any("val_accuracy" in m for m in metrics) else []), "seconds"]
    best = summary.get("best_epoch") or max((m["epoch"] for m in metrics if m.get("best", True)), default=None)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vaekit run {esc(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em auto;padding:0 1em;max-width:{FULL_WIDTH}px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
.pictures{{display:grid;grid-template-columns:repeat(auto-fill,minmax({HALF_WIDTH - 20}px,1fr));gap:1.5em;align-items:start}}
figure{{margin:0}} figure.wide{{grid-column:1/-1}} figcaption{{font-size:90%;color:#333;max-width:60em}}
img{{max-width:100%;height:auto;display:block}} img.px{{image-rendering:pixelated}}
tr.best td{{background:#fff3c4;font-weight:bold}} tr.gap td{{text-align:center;color:#666;font-style:italic}}
pre{{background:#f6f6f6;padding:1em}}</style></head>
<body><h1>vaekit run <code>{esc(run_dir.name)}</code></h1>
<h2>Summary</h2><table>{table}</table>
<h2>Pictures</h2>{f'<div class="pictures">{figures}</div>' if figures else
                  "<p>No pictures (run with plots enabled, or <code>vaekit report RUN</code>).</p>"}
<h2>Per epoch</h2>{f"<p>&#9733; marks the saved model's epoch ({chosen_by}).</p>" if best else ""}
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{_epoch_rows(metrics, head, best)}</table>
<h2>Config</h2><pre>{esc(json.dumps(cfg, indent=2, sort_keys=True))}</pre>
</body></html>
"""
    atomic_write(run_dir / REPORT_FILE, page.encode())
    return run_dir / REPORT_FILE
