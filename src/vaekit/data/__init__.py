"""Datasets held in memory as arrays, with train / validation / test splits.

A *data spec* names a source and, for the named datasets, optionally a split:

``digits`` (scikit-learn's bundled 8x8 digits, the offline default), ``mnist``, ``mnist:test``,
``fashion-mnist``, ``binarized-mnist:valid``, ``folder:PATH``, ``npy:PATH``, ``npz:PATH``, ``csv:PATH``,
``parquet:PATH``.
A bare path is read by its suffix. Labels are kept when a source has them, for plots and evaluation
only: training never sees them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from .download import cache_dir
from .formats import read_array_file, read_csv
from .named import DIGIT_NAMES, NAMED, load_named_split
from .streaming import FileArray, open_image_folder, open_npy, parquet_to_npy, should_stream

SPLIT_SEED = 0  # the train/val/test split of a source is fixed, whatever the training seed
FILE_KINDS = ("folder", "npy", "npz", "csv", "parquet")
IN_MEMORY = "array"  # the dataset of a model fitted in Python on an in-memory array (no spec to reload)


@dataclass(frozen=True)
class ArrayData:
    """Items ``x`` (N, *item_shape): uint8 in [0, 255] or float32, in memory or read on demand from an npy file
    (``FileArray``, read a batch at a time); labels ``y`` (N,) or None."""

    x: np.ndarray | FileArray
    y: np.ndarray | None
    name: str
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        """(C, H, W) items with C in {1, 3}."""
        return len(self.item_shape) == 3 and self.item_shape[0] in (1, 3)

    def as_float(self) -> np.ndarray:
        """float32 copy of ``x``; uint8 is scaled to [0, 1]."""
        return self.x.astype(np.float32) / 255.0 if self.x.dtype == np.uint8 else self.x.astype(np.float32)

    def subset(self, index: np.ndarray) -> "ArrayData":
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index])


@dataclass(frozen=True)
class Standardizer:
    """Per-feature ``(x - mean) / std`` fitted on the training split; saved with the model."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)

    @classmethod
    def fit(cls, x: np.ndarray | FileArray) -> "Standardizer":
        # in float64 either way: float32 sums over many rows lose digits, and the two paths must agree
        if isinstance(x, FileArray):
            mean, std = x.moments()
        else:
            mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
        return cls(mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32))

    def apply(self, data: ArrayData) -> ArrayData:
        if data.item_shape != self.mean.shape:
            raise DataError(f"{data.name}: has {data.item_shape[0] if data.item_shape else 0} features, "
                            f"the model was trained on {self.mean.shape[0]}")
        if isinstance(data.x, FileArray):  # standardised batch by batch as it is read
            return replace(data, x=data.x.standardized(self.mean, self.std))
        return replace(data, x=((data.x - self.mean) / self.std).astype(np.float32))


@dataclass(frozen=True)
class Splits:
    train: ArrayData
    val: ArrayData
    test: ArrayData
    standardizer: Standardizer | None = None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a data spec into (source, argument): ``mnist:test`` -> ("mnist", "test"), ``csv:a.csv`` -> ("csv", "a.csv")."""
    kind, sep, arg = spec.partition(":")
    if kind in FILE_KINDS:
        if not arg:
            raise DataError(f"data spec {spec!r}: give a path after '{kind}:'")
        return kind, arg
    if kind in NAMED or kind == "digits":
        return kind, (arg or None)
    path = Path(spec)
    if path.is_dir():
        return "folder", spec
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz", ".csv", ".parquet"):
        return suffix[1:], spec
    names = ", ".join(["digits", *NAMED, *(k + ":PATH" for k in FILE_KINDS)])
    raise DataError(f"unknown data spec {spec!r}; use one of {names}")


def absolute_paths(cfg: DataConfig) -> DataConfig:
    """``cfg`` with its data folder and any file path in its spec made absolute, as a run saves them, so that
    commands run from another working directory read the same files."""
    kind, arg = parse_spec(cfg.dataset)
    dataset = f"{kind}:{os.path.abspath(Path(arg).expanduser())}" if kind in FILE_KINDS else cfg.dataset
    data_dir = os.path.abspath(Path(cfg.data_dir).expanduser()) if cfg.data_dir else None
    return replace(cfg, dataset=dataset, data_dir=data_dir)


def data_for_run(cfg: DataConfig, data_dir: str | os.PathLike | None = None) -> DataConfig:
    """A run's data config as a later command reads it. The data folder searched first is the command's
    ``data_dir`` (``--data-dir``), else ``$VAEKIT_DATA``, else the folder saved in the run if it still exists;
    then the cache (README, "Data specs"). Every named dataset's files are checked by SHA-256 wherever found."""
    saved = cfg.data_dir if cfg.data_dir and Path(cfg.data_dir).is_dir() else None
    chosen = data_dir or os.environ.get("VAEKIT_DATA") or saved
    return replace(cfg, data_dir=str(chosen) if chosen else None)


def load_data(spec: str, cfg: DataConfig | None = None) -> ArrayData:
    """Load the items a spec names: a named dataset's split (``train`` when none is given) or a whole file."""
    cfg = cfg or DataConfig(dataset=spec)
    kind, arg = parse_spec(spec)
    if kind == "digits":
        return _digits_split(arg or "train")
    if kind in NAMED:
        split = arg or "train"
        x, y = load_named_split(kind, split, cfg.data_dir)
        return ArrayData(x, y, f"{kind}:{split}", NAMED[kind].class_names)
    return _load_file(kind, arg, cfg)


def load_splits(cfg: DataConfig) -> Splits:
    """Train / validation / test splits for the dataset a config names.

    Named datasets use their official test (and validation) split; otherwise a fixed, seeded share
    of the data is held out. CSV features, and npy/npz tables with values outside [0, 1], are standardised by
    the training split's mean and std.
    """
    splits = _load_splits(cfg)
    if cfg.validation == "train":
        splits = merge_validation(splits)
    if cfg.normal_class is not None:
        splits = keep_class(splits, cfg.normal_class)
    if cfg.labels is not None:
        splits = replace(splits, train=keep_labels(splits.train, cfg.labels, cfg.labels_seed))
    return splits


def merge_validation(splits: Splits) -> Splits:
    """``splits`` with the validation items appended to the training ones and no validation split left (training
    then keeps the last epoch's model: ``training._end_epoch``)."""
    train, val = splits.train, splits.val
    if isinstance(train.x, FileArray) or isinstance(val.x, FileArray):
        raise DataError(f"{train.name}: --validation train joins data held in memory; this source is streamed "
                        "(pass --stream off to load it)")
    y = None if train.y is None or val.y is None else np.concatenate([train.y, val.y])
    merged = replace(train, x=np.concatenate([train.x, val.x]), y=y, name=f"{train.name} + {val.name}")
    return replace(splits, train=merged, val=val.subset(np.arange(0)))


def keep_labels(train: ArrayData, n: int, seed: int = 0) -> ArrayData:
    """``train`` with ``n`` labels left, spread evenly over its classes (the first ``n % K`` classes get one
    more), drawn with ``seed``; the other items' labels become -1 (unlabelled)."""
    if train.y is None:
        raise DataError(f"{train.name}: has no labels, so --labels cannot keep any")
    classes = np.unique(train.y[train.y >= 0])
    if not len(classes) <= n <= int((train.y >= 0).sum()):
        raise DataError(f"{train.name}: --labels {n} must be between the number of classes ({len(classes)}) and "
                        f"the labelled training items ({int((train.y >= 0).sum())})")
    rng = np.random.default_rng(seed)
    y = np.full_like(train.y, -1)
    for i, c in enumerate(classes):
        members = np.flatnonzero(train.y == c)
        take = n // len(classes) + (i < n % len(classes))
        if take > len(members):
            raise DataError(f"{train.name}: class {c} has {len(members)} items, fewer than the {take} labels "
                            f"--labels {n} keeps of each class")
        chosen = rng.choice(members, take, replace=False)
        y[chosen] = c
    return replace(train, y=y)


def keep_class(splits: Splits, k: int) -> Splits:
    """One-class training: keep only class ``k`` in the train and validation splits; the test split stays whole."""
    train = splits.train
    if train.y is None:
        raise DataError(f"{train.name}: has no labels, so --normal-class cannot pick a class")
    if not (train.y == k).any():
        raise DataError(f"{train.name}: no items of class {k}; classes are {sorted(set(train.y.tolist()))}")
    val = splits.val.subset(np.flatnonzero(splits.val.y == k)) if splits.val.y is not None else splits.val
    return replace(splits, train=train.subset(np.flatnonzero(train.y == k)), val=val)


def _load_splits(cfg: DataConfig) -> Splits:
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    kind, arg = parse_spec(cfg.dataset)
    if cfg.stream == "on" and kind not in ("npy", "parquet", "folder"):
        raise DataError(f"{cfg.dataset}: --stream on reads npy:PATH, parquet:PATH and folder:PATH data a batch at a "
                        "time; this source is read into memory")
    if kind in NAMED:
        name = NAMED[kind]
        train, test = load_data(f"{kind}:train", cfg), load_data(f"{kind}:test", cfg)
        if "valid" in name.splits:
            return Splits(train, load_data(f"{kind}:valid", cfg), test)
        train, val = _holdout(train, cfg.val_fraction)
        return Splits(train, val, test)
    data = _digits_all() if kind == "digits" else _load_file(kind, arg, cfg)
    n_items = len(data)
    rest, test_rows = _holdout_rows(n_items, 0.1)
    train_in_rest, val_in_rest = _holdout_rows(len(rest), cfg.val_fraction)
    # Each split copied once from the loaded items, which are then let go: an array in memory peaks at twice its
    # size here (three times when the validation split was taken from a copy of train + val).
    train, val, test = (data.subset(rows) for rows in (rest[train_in_rest], rest[val_in_rest], test_rows))
    del data
    if len(train) == 0:
        raise DataError(f"{cfg.dataset}: too few items ({n_items}) to train on")
    if kind in ("csv", "parquet") or _real_valued_table(train):  # the estimators' rule: tables outside [0, 1]
        std = Standardizer.fit(train.x)
        return Splits(std.apply(train), std.apply(val), std.apply(test), std)
    return Splits(train, val, test)


def _real_valued_table(data: ArrayData) -> bool:
    """Vectors (N, D) with values outside [0, 1]: standardised per feature (the mean and std saved with the
    model), as ``csv:`` tables and the estimators' tables are."""
    return len(data.item_shape) == 1 and data.x.dtype != np.uint8 and bool(data.x.min() < 0 or data.x.max() > 1)


def _holdout(data: ArrayData, fraction: float) -> tuple[ArrayData, ArrayData]:
    """Split off ``fraction`` of the items (a fixed seeded choice) as the second part."""
    kept, held_out = _holdout_rows(len(data), fraction)
    return data.subset(kept), data.subset(held_out)


def _holdout_rows(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows (ascending) of n items that stay, and the ``fraction`` held out: a choice fixed by SPLIT_SEED."""
    n_out = int(round(n * fraction)) if n > 2 else 0
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def _digits_all() -> ArrayData:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # bundled with scikit-learn: 1797 images, 8x8, values 0..16
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return ArrayData(x, bunch.target.astype(np.int64), "digits", DIGIT_NAMES)


def _digits_split(split: str) -> ArrayData:
    splits = load_splits(DataConfig(dataset="digits"))
    if split not in ("train", "valid", "test"):
        raise DataError(f"digits: no split {split!r}; it has train, valid, test")
    return {"train": splits.train, "valid": splits.val, "test": splits.test}[split]


def _load_file(kind: str, arg: str, cfg: DataConfig) -> ArrayData:
    path = Path(arg).expanduser()
    if kind == "folder":  # indexed once (cached), then decoded a batch at a time or all at once
        workers = 2 if cfg.workers is None else cfg.workers  # decoding is the work: processes pay (bench/README)
        items, y, names = open_image_folder(path, cfg.image_size, cfg.channels, cache_dir() / "folders", workers)
        return ArrayData(items if should_stream(items.nbytes, cfg.stream) else np.asarray(items), y, items.name, names)
    if kind == "csv":
        x, y, _, class_names = read_csv(path)
        return ArrayData(x, y, f"csv:{path}", class_names)
    if kind == "npy" and path.is_file() and should_stream(path.stat().st_size, cfg.stream):
        return ArrayData(open_npy(path, workers=cfg.workers or 0), None, f"{kind}:{path}")
    if kind == "parquet":  # decoded once into a float32 npy in the cache, then streamed or loaded like one
        if not path.is_file():
            raise DataError(f"{path}: no such Parquet file")
        npy, y, _, class_names = parquet_to_npy(path, cache_dir() / "parquet")
        name = f"parquet:{path}"
        x = open_npy(npy, name, cfg.workers or 0, finite=True) if should_stream(npy.stat().st_size, cfg.stream) \
            else np.load(npy)  # parquet_to_npy checked every value as it wrote them
        return ArrayData(x, y, name, class_names)
    x, y = read_array_file(path)
    return ArrayData(_check_array(x, path), None if y is None else _check_labels(y, path), f"{kind}:{path}")


def _check_array(x: np.ndarray, path: Path) -> np.ndarray:
    """Accept (N, D), (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; uint8 or finite floats."""
    if x.dtype == np.bool_:
        x = x.astype(np.uint8) * 255
    if x.dtype.kind not in "uif":
        raise DataError(f"{path}: array dtype {x.dtype} is not numeric")
    if x.ndim < 2 or len(x) == 0 or x[0].size == 0:
        raise DataError(f"{path}: expected an array of items (N, ...), got shape {x.shape}")
    if x.dtype != np.uint8:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)  # out-of-range values become inf and are reported below
        if not np.isfinite(x).all():
            raise DataError(f"{path}: contains NaN or infinite values (first at flat index "
                            f"{int(np.flatnonzero(~np.isfinite(x))[0])})")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim > 4 or (x.ndim == 4 and x.shape[1] not in (1, 3)):
        raise DataError(f"{path}: cannot read shape {x.shape} as vectors (N, D) or images (N, C, H, W)")
    return np.ascontiguousarray(x)


def _check_labels(y: np.ndarray, path: Path) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


__all__ = ["ArrayData", "Splits", "Standardizer", "load_data", "load_splits", "parse_spec", "NAMED", "absolute_paths",
           "data_for_run"]
