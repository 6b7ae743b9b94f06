"""The explorer's one view of a run: every use of vaekit internals is here, so the server can be re-pointed
(e.g. at the estimators) in one place.

``RunState`` loads the model once and computes the heavy things once (the test split's latent means, their
PCA, the KL order of the dims, anomaly scores); after that, each request only decodes a few codes.
"""
from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .. import latent, runs
from ..anomaly import score_items
from ..api import input_data, open_run
from ..data import IN_MEMORY, parse_spec
from ..runs import PICTURE_FILES, REPORT_FILE, SUMMARY_FILE
from ..tensors import as_tensor, model_input

MAX_SLIDERS = 32
Z_BOUND = 10.0  # |z| a client may ask to decode: 10 prior standard deviations (an AE: wider, see z_bound)
CACHE_SIZE = 4096  # decoded codes kept (a 28x28 image is 784 bytes: ~3 MB)
CACHE_DECIMALS = 4  # codes are rounded before decoding, so a repeated point is a cache hit


class RunState:
    """A loaded run: its model, the test split's codes and their 2-D view, and the run folder's files."""

    def __init__(self, run_dir: str | Path, device: str = "auto", data_dir: str | Path | None = None,
                 data: str | None = None):
        self.run_dir = Path(run_dir)
        estimator = open_run(self.run_dir, device)
        self.model, self.cfg, self.standardizer = estimator.model_, estimator.config_, estimator.standardizer_
        # a table's column names when the estimator was fitted on a DataFrame (scikit-learn's attribute)
        self.fitted_feature_names = getattr(estimator, "feature_names_in_", None)
        # a model of labels: the classes it was fitted on (scikit-learn's attribute; a CLI run's are 0..K-1)
        classes = getattr(estimator, "classes_", None)
        self.fitted_classes = None if classes is None else [str(c) for c in classes]
        self.device = next(self.model.parameters()).device
        # the items shown: the run's test split, or ``data`` (any data spec), which a model fitted in Python on
        # an in-memory array needs (it has no split of its own); tables standardised as the model's were
        self.test = input_data(estimator, data, data_dir=data_dir)
        self.items_name = "test items" if data is None else f"items of {self.test.name}"  # what the page calls them
        self.latent_dim = self.cfg.model.latent_dim
        self.is_image = len(self.cfg.model.input_shape) == 3
        x = as_tensor(self.test, self.device)
        self.means = latent.posterior_means(self.model, x)  # (N, L)
        self.points, self.center, self.axes, self.axis_names = self._plane(self.means)
        self.dim_order, self.dim_use, self.use_name = self._order_dims(x)
        self.scores = score_items(self.model, x, "recon")  # (N,) -log p(x | z = mean), higher = stranger
        self.originals = model_input(x).float().cpu().numpy()  # (N, *item_shape)
        self.z_bound = max(Z_BOUND, math.ceil(2 * float(np.abs(self.means).max(initial=0.0))))
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # one forward pass at a time: 2 CPU cores gain nothing from parallel ones

    # --- start-up computations -----------------------------------------------------------------------

    def _plane(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """The 2-D points shown, and the map back: z = center + axes.T @ point. (N, 2), (L,), (2, L)."""
        L = means.shape[1]
        if L <= 2:  # the latent plane itself (a 1-D code is drawn on the x axis)
            axes = np.eye(2, L, dtype=np.float32)
            points = np.c_[means, np.zeros((len(means), 2 - L), np.float32)]
            return points, np.zeros(L, np.float32), axes, ["z1", "z2" if L == 2 else "(1-D latent)"]
        points, center, axes = latent.pca_2d(means)
        var = latent.explained_variance(means)
        names = [f"PC{i + 1} of the {L}-D latent means ({v:.0%} of variance)" for i, v in enumerate(var[:2])]
        return points.astype(np.float32), center.astype(np.float32), axes.astype(np.float32), names

    def _order_dims(self, x: torch.Tensor) -> tuple[list[int], np.ndarray, str]:
        """Dims by use, most used first: a VAE's mean KL per dim (nats); an AE's variance of the codes."""
        if self.model.variational:
            use, name = latent.kl_per_dim(self.model, x), "KL (nats)"
        else:
            use, name = self.means.var(0), "variance"
        return [int(d) for d in np.argsort(-use, kind="stable")], use, name

    # --- the adapter's surface -----------------------------------------------------------------------

    def latent_means(self) -> np.ndarray:
        return self.means

    def kl_order(self) -> list[int]:
        return self.dim_order[:MAX_SLIDERS]

    def slider_ranges(self) -> list[tuple[float, float]]:
        """(low, high) of each slider of ``kl_order``: the prior's +-3 or the test codes' range if wider."""
        lo = np.minimum(self.means.min(0, initial=0.0), -3.0)
        hi = np.maximum(self.means.max(0, initial=0.0), 3.0)
        return [(float(max(lo[d], -self.z_bound)), float(min(hi[d], self.z_bound))) for d in self.kl_order()]

    @property
    def conditional_classes(self) -> int:
        """How many classes a conditional model (one trained on labels, e.g. M2) decodes with; 0 for others."""
        return self.cfg.model.n_classes if self.model.uses_labels else 0

    @property
    def conditional_class_names(self) -> list[str] | None:
        """The names of the classes a conditional model decodes, in its class order: those it was fitted on
        (e.g. "cat", "dog"), or, where those are its class indices (a CLI run), the data's class names."""
        if not self.conditional_classes:
            return None
        indices = [str(k) for k in range(self.conditional_classes)]
        if self.fitted_classes is not None and self.fitted_classes != indices:
            return self.fitted_classes
        names = self.class_names()
        return names[:self.conditional_classes] if names and len(names) >= self.conditional_classes else indices

    @property
    def approximate_mean(self) -> bool:
        """Whether decoding to the likelihood's mean is an approximation (an autoregressive likelihood's
        mean-field picture), so that only drawn values show the model exactly."""
        return bool(self.model.likelihood.sequential_mean)

    def decode(self, z: np.ndarray, label: int | None = None, draw_seed: int | None = None) -> np.ndarray:
        """Codes (B, L) -> items (B, *item_shape) in the data's units (a table's features un-standardised):
        the likelihood's mean, or with ``draw_seed`` values drawn from p(x | z) by a generator seeded so (the
        same request, the same picture; nearby codes share the draws' noise). A conditional model decodes them
        as class ``label`` (None: the uniform mixture of its classes).

        Each code is rounded to CACHE_DECIMALS; means are looked up in an LRU cache and only the misses go
        through the decoder, as one batch. Draws are never cached: a row's values depend on the rows before it.
        """
        z = np.round(np.asarray(z, np.float32), CACHE_DECIMALS)
        keys = [row.tobytes() + (b"" if label is None else b"|%d" % label) for row in z]  # a class is part of it
        out: list[np.ndarray | None] = [None] * len(z)
        with self._lock:
            if draw_seed is None:
                for k, key in enumerate(keys):
                    if key in self._cache:
                        self._cache.move_to_end(key)
                        out[k] = self._cache[key]
            missing = [k for k, item in enumerate(out) if item is None]
            if missing:
                with torch.inference_mode():
                    codes = torch.from_numpy(z[missing]).to(self.device)
                    draw = draw_seed is not None
                    gen = torch.Generator(device=self.device).manual_seed(draw_seed) if draw else None
                    if label is None:
                        new = self.model.decode_items(codes, gen, draw)
                    else:
                        labels = torch.full((len(codes),), label, device=self.device)
                        new = self.model.decode_class(codes, labels, gen, draw)
                    new = new.float().cpu().numpy()
                for k, item in zip(missing, self._to_data_units(new)):
                    out[k] = item
                    if not draw:
                        self._cache[keys[k]] = item
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return np.stack(out)

    def _to_data_units(self, items: np.ndarray) -> np.ndarray:
        if self.standardizer is None:
            return items
        return items * self.standardizer.std + self.standardizer.mean

    def item(self, i: int) -> np.ndarray:
        """Test item i in the data's units: (*item_shape,)."""
        return self._to_data_units(self.originals[i:i + 1])[0]

    def interpolate(self, i: int, j: int, steps: int, draw_seed: int | None = None) -> np.ndarray:
        """``steps`` items decoded on the straight line from item i's latent mean to item j's (both ends in): the
        likelihood's means, or values drawn as ``decode`` draws them."""
        return self.decode(latent.interpolate(self.means[i], self.means[j], steps), draw_seed=draw_seed)

    def anomaly_extremes(self, n: int = 8) -> tuple[list[int], list[int]]:
        """Indices of the n most anomalous test items (highest score first) and the n least (lowest first)."""
        order = np.argsort(self.scores, kind="stable")
        return [int(i) for i in order[::-1][:n]], [int(i) for i in order[:n]]

    def metrics(self) -> dict:
        """summary.json's test metrics and timings, and the last epoch of metrics.jsonl."""
        path = self.run_dir / SUMMARY_FILE
        summary = json.loads(path.read_text()) if path.is_file() else {}
        epochs = runs.read_metrics(self.run_dir)
        return {"test": summary.get("test") or {}, "epochs": summary.get("epochs", len(epochs)),
                "best_epoch": summary.get("best_epoch"), "wall_seconds": summary.get("wall_seconds"),
                "last_epoch": epochs[-1] if epochs else None}

    def run_files(self) -> dict[str, Path]:
        """The run's report and pictures by name: the only files the server sends from the run folder."""
        names = [REPORT_FILE, *PICTURE_FILES, "anomalies.png"]
        return {name: self.run_dir / name for name in names if (self.run_dir / name).is_file()}

    def feature_names(self) -> list[str]:
        """A table's column names (from the run's own CSV when it is still there), else f1, f2, ..."""
        d = int(np.prod(self.cfg.model.input_shape))
        if self.fitted_feature_names is not None and len(self.fitted_feature_names) == d:
            return [str(n) for n in self.fitted_feature_names]
        kind, arg = parse_spec(self.cfg.data.dataset) if self.cfg.data.dataset != IN_MEMORY else ("array", None)
        if kind == "csv" and arg:
            try:
                from ..data.formats import read_csv

                names = [n for n in read_csv(Path(arg))[2] if n != "label"]
                if len(names) == d:
                    return names
            except Exception:  # the file moved or changed: the names are a nicety, the numbers are not
                pass
        return [f"f{k + 1}" for k in range(d)]

    def class_names(self) -> list[str] | None:
        if self.test.y is None:
            return None
        if self.test.class_names:
            return list(self.test.class_names)
        return [str(c) for c in range(int(self.test.y.max()) + 1)]
