"""Items read from an ``.npy`` file or an image folder a batch at a time: data larger than memory (issue #16).

``FileArray`` stands where an in-memory array stands in ``ArrayData``: a split is a row index into the one
file (no copy), and a table's standardisation is applied to each batch as it is read. The training loop reads it
through ``FileTensor``, which answers the few tensor operations the loop uses (``len``, slices, ``index_select``,
``split``) with tensors of just those rows.

Memory stays bounded: rows are read with ``preadv`` into fresh arrays, so the file's bytes live in the OS page
cache (which keeps them for the next epoch if it has room), never in this process's resident memory. The
epoch's order (``training.shuffled_batches``) spans the whole file: blocks of rows one read takes (``SPAN_BYTES``)
in a random order, rows shuffled again within windows of batches (``WINDOW_BYTES``) that are read in one pass,
one window ahead of training.
Parquet tables are decoded once, record batch by record batch, into such a file in the cache. An image folder's
files are indexed once (listed, their headers read and their data checked; the index is cached as JSON), then
decoded a batch at a time, by DataLoader worker processes when ``workers`` > 0.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..errors import DataError
from .formats import decode_image, folder_labels, folder_shape, image_files

CHUNK_BYTES = 64 << 20  # one read of a streaming pass (statistics, checks)
# One read call costs about 2 us here whatever its size up to a few KiB, so rows this close in the file are read
# in one call (the rows between them read and dropped), and an epoch's order keeps rows in blocks of that size.
SPAN_BYTES = 4096
WINDOW_BYTES = 64 << 20  # training batches read at once: an epoch's order shuffles rows within such a window
AUTO_SHARE = 0.25  # --stream auto streams a file larger than this share of the memory available


class _File:
    """An npy file's items (N, *stored_shape), read with ``pread``: what is read lands in the OS page cache, which
    the process's resident memory does not count. (A memory map counts every page it touches, and this kernel maps
    whole large folios, up to 2 MB, per fault: random rows over a 2.3 GB map made 2.4 GB resident in 1,000
    batches.)"""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], offset: int):
        self.path, self.dtype, self.shape, self.offset = path, dtype, shape, offset
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __del__(self):
        try:
            os.close(self.fd)
        except (AttributeError, OSError):
            pass

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows (R,) sorted ascending (repeats allowed) -> (R, *stored_shape): one ``preadv`` per span of rows
        less than ``SPAN_BYTES`` apart."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        steps = np.diff(rows)
        starts = np.r_[0, np.flatnonzero(steps * self.row_bytes > SPAN_BYTES) + 1, len(rows)]
        irregular = np.r_[0, np.cumsum(steps != 1)]  # spans with none are consecutive rows: read in place
        flat = out.reshape(len(rows), -1).view(np.uint8)
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
            first, last = int(rows[a]), int(rows[b - 1])
            direct = irregular[b - 1] == irregular[a]
            span = flat[a:b] if direct else np.empty((last - first + 1, self.row_bytes), np.uint8)
            got = os.preadv(self.fd, [memoryview(span).cast("B")], self.offset + first * self.row_bytes)
            if got != span.nbytes:
                raise DataError(f"{self.path}: truncated while reading (rows {first}-{last})")
            if not direct:
                flat[a:b] = span[rows[a:b] - first]
        return out

    def shuffle_plan(self, batch_size: int) -> tuple[int, int]:
        """(block, window) for an epoch's order over these rows: blocks of rows that one read takes, and the
        batches read at once (``shuffled_batches``)."""
        return max(1, SPAN_BYTES // self.row_bytes), max(1, WINDOW_BYTES // (batch_size * self.row_bytes))


class _Folder:
    """An image folder's files as items (N, C, H, W) uint8, each decoded when read: the ``_File`` interface."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int]):
        self.files, self.dtype = files, np.dtype(np.uint8)
        self.shape = (len(files), *shape)

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows.tolist()):
            out[i] = decode_image(self.files[row], self.shape[1:])
        return out

    def shuffle_plan(self, batch_size: int) -> tuple[int, int]:
        """Every image is its own read: rows in any order, one batch at a time."""
        return 1, 1


class FileArray:
    """Items (N, *item_shape) of an ``.npy`` file read on demand: uint8 as stored, other numbers as float32.

    ``rows`` (N,) selects and orders the file's items (None: all, in order); ``channels_last`` files (N, H, W, C)
    are read as (N, C, H, W); ``standardize`` (mean, std), each (D,), is applied to every read of a table.
    ``workers``: processes that read training batches ahead (0: one thread of this process).
    """

    def __init__(self, source: _File | _Folder, name: str, rows: np.ndarray | None = None,
                 channels_last: bool = False, standardize: tuple[np.ndarray, np.ndarray] | None = None,
                 workers: int = 0):
        self._source, self.name, self.rows = source, name, rows
        self.channels_last, self.standardize, self.workers = channels_last, standardize, workers
        stored = source.shape[1:]
        self.item_shape = (stored[2], stored[0], stored[1]) if channels_last else tuple(stored)
        self.dtype = np.dtype(np.uint8) if source.dtype in (np.uint8, np.bool_) else np.dtype(np.float32)
        self._range: tuple[float, float] | None = None

    # --- the array interface ArrayData uses ---------------------------------------------------------------
    def __len__(self) -> int:
        return self._source.shape[0] if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.item_shape)) * self.dtype.itemsize

    def _with(self, **changes) -> "FileArray":
        fields = dict(source=self._source, name=self.name, rows=self.rows, channels_last=self.channels_last,
                      standardize=self.standardize, workers=self.workers)
        return FileArray(**{**fields, **changes})

    def __getitem__(self, key):
        """A slice or an index array -> a FileArray of those rows (no copy); an int -> that item (array)."""
        if isinstance(key, (int, np.integer)):
            return self.read(np.asarray([key]))[0]
        positions = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        if positions.dtype == np.bool_:
            positions = np.flatnonzero(positions)
        return self._with(rows=positions.astype(np.int64) if self.rows is None else self.rows[positions])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every item, in memory: for the small subsets that pictures and probes take."""
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self).astype(dtype)

    def standardized(self, mean: np.ndarray, std: np.ndarray) -> "FileArray":
        return self._with(standardize=(mean, std))

    # --- reading ------------------------------------------------------------------------------------------
    def read(self, positions: np.ndarray) -> np.ndarray:
        """The items at ``positions`` (R,) of this array, in that order: (R, *item_shape), a copy."""
        return self.read_many([positions])[0]

    def read_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """The items of several position arrays, each (R_i,) -> (R_i, *item_shape), in one pass over the file:
        the rows they name together are read once, in file order (so nearby rows share a read)."""
        rows = [np.asarray(p) if self.rows is None else self.rows[p] for p in batches]
        union = np.unique(np.concatenate(rows))  # sorted: file order
        stored = self._source.read(union)
        return [self._finish(stored[np.searchsorted(union, r)]) for r in rows]

    def shuffle_plan(self, batch_size: int) -> tuple[int, int]:
        return self._source.shuffle_plan(batch_size)

    def _finish(self, stored: np.ndarray) -> np.ndarray:
        """Rows as stored -> items: channels first, uint8 or float32, standardised for a table."""
        out = stored
        if self.channels_last:
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        if out.dtype == np.bool_:
            out = out.astype(np.uint8) * 255
        elif out.dtype != np.uint8:
            out = out.astype(np.float32)
        if self.standardize is not None:
            mean, std = self.standardize
            out = ((out - mean) / std).astype(np.float32)
        return out

    def chunks(self) -> Iterator[np.ndarray]:
        """The items in order, ``CHUNK_BYTES`` at a time: for passes over the whole array."""
        per_chunk = max(1, CHUNK_BYTES // max(1, self.nbytes // max(1, len(self))))
        for start in range(0, len(self), per_chunk):
            yield self.read(np.arange(start, min(start + per_chunk, len(self))))

    def value_range(self) -> tuple[float, float]:
        """(min, max) over every value, in one pass (kept); a NaN or infinity is a one-line DataError."""
        if self._range is None:
            low, high = np.inf, -np.inf
            for chunk in self.chunks():
                if chunk.dtype != np.uint8 and not np.isfinite(chunk).all():
                    raise DataError(f"{self.name}: contains NaN or infinite values")
                low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
            self._range = (low, high)
        return self._range

    def min(self) -> float:
        return self.value_range()[0]

    def max(self) -> float:
        return self.value_range()[1]

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and (population) standard deviation, item_shape each, in one pass in float64: each
        chunk's mean and sum of squared deviations, merged as Chan, Golub & LeVeque (1979) do, so a constant
        feature gets a std of exactly 0, as the in-memory two-pass ``np.std`` gives it."""
        n, mean, deviations = 0, np.zeros(self.item_shape), np.zeros(self.item_shape)
        for chunk in self.chunks():
            c = chunk.astype(np.float64)
            m, k = c.mean(0), len(c)
            delta = m - mean
            mean = mean + delta * (k / (n + k))
            deviations += np.square(c - m).sum(0) + np.square(delta) * (n * k / (n + k))
            n += k
        return mean, np.sqrt(deviations / n)


class FileTensor:
    """A FileArray read as the training loop reads a stored tensor: slices and ``index_select`` give tensors
    of those rows on ``device``; the rest of the file is never in memory."""

    def __init__(self, items: FileArray, device: torch.device):
        self.items, self.device = items, device
        self.dtype = torch.uint8 if items.dtype == np.uint8 else torch.float32

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.items.shape)

    def _tensor(self, positions: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.items.read(positions))
        return x.to(self.device, non_blocking=True) if self.device.type != "cpu" else x

    def __getitem__(self, key: slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        """A slice or an index (tensor or array) of rows -> those rows as a tensor."""
        if isinstance(key, slice):
            return self._tensor(np.arange(len(self))[key])
        index = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        return self._tensor(np.flatnonzero(index) if index.dtype == np.bool_ else index)

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        assert dim == 0
        return self._tensor(index.cpu().numpy())

    def split(self, size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def shuffle_plan(self, batch_size: int) -> tuple[int, int]:
        """(block, window) of an epoch's order over these items (``FileArray.shuffle_plan``)."""
        return self.items.shuffle_plan(batch_size)

    def gather_ahead(self, indexes: Iterable[torch.Tensor], window: int = 1) -> Iterator[torch.Tensor]:
        """The rows of each index (B,) in turn, read ``window`` batches at a time (one pass over the file for
        them all) and one window ahead while the caller trains: on a background thread of this process, or by
        ``workers`` DataLoader processes. Reads are system calls and image decoding, which release the GIL and so
        overlap the training step's compute. At most two windows (about ``2 * WINDOW_BYTES``) are in memory."""
        groups = _windows((index.cpu().numpy() for index in indexes), window)
        if self.items.workers:
            loader = torch.utils.data.DataLoader(
                _WindowReader(self.items), sampler=list(groups), batch_size=None, num_workers=self.items.workers,
                prefetch_factor=2, pin_memory=self.device.type == "cuda",
                generator=torch.Generator())  # its own: seeding the workers must not draw from the training's RNG
            yield from (self._on_device(torch.as_tensor(b)) for got in loader for b in _raise_if_failed(got))
            return
        with ThreadPoolExecutor(1, thread_name_prefix="vaekit-read") as pool:
            pending = None
            for group in groups:
                upcoming = pool.submit(self.items.read_many, group)
                if pending is not None:
                    yield from (self._on_device(torch.from_numpy(b)) for b in pending.result())
                pending = upcoming
            if pending is not None:
                yield from (self._on_device(torch.from_numpy(b)) for b in pending.result())

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True) if self.device.type != "cpu" else x


def _windows(batches: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive batches in lists of ``size`` (the last may be shorter)."""
    group: list[np.ndarray] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _raise_if_failed(got: list | str) -> list:
    if isinstance(got, str):
        raise DataError(got)
    return got


class _WindowReader(torch.utils.data.Dataset):
    """A DataLoader's dataset whose items are windows of batches: ``reader[[positions, ...]]`` is those rows,
    one array (B, ...) per batch. A read error comes back as its one-line message, raised in the training process."""

    def __init__(self, items: FileArray):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, batches: list[np.ndarray]) -> list[np.ndarray] | str:
        try:
            return self.items.read_many(batches)
        except DataError as e:
            return str(e)


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux's MemAvailable), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_stream(nbytes: int, stream: str) -> bool:
    """``--stream``: on, off, or auto (items of ``nbytes`` larger than ``AUTO_SHARE`` of the available memory)."""
    if stream != "auto":
        return stream == "on"
    return nbytes > AUTO_SHARE * available_memory()


# Entries named before 2026-12 by one hash of path, size and mtime: nothing reads them any more
LEGACY_PARQUET_ENTRY = re.compile(r"[0-9a-f]{24}\.npy")


def parquet_to_npy(path: Path, cache: Path, label_column: str = "label"
                   ) -> tuple[Path, np.ndarray | None, list[str], tuple[str, ...] | None]:
    """A Parquet table's numeric columns as a float32 ``.npy`` (N, D) in ``cache``, written record batch by
    record batch (bounded memory) and kept for the next run while the table's size and mtime stay the same.

    Returns (the npy path, labels (N,) int64 or None, feature names, class names or None). ``label_column`` is
    kept aside as labels (integers as they are; text as classes in sorted order, named). Any other column that
    is not a number, and any NaN or infinite value, is a one-line DataError naming it.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'vaekit[parquet]'") from None
    try:
        table = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering kept every row group read: 1.8 GB for 10M rows
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:160]})") from None
    schema = table.schema_arrow
    features = [f.name for f in schema if f.name != label_column]
    for f in schema:
        if f.name != label_column and not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                                           or pa.types.is_boolean(f.type)):
            raise DataError(f"{path}: column {f.name!r} is {f.type}, not a number; features must be numeric "
                            f"(a text column of classes may be named {label_column!r})")
    if not features:
        raise DataError(f"{path}: no feature columns")
    n = table.metadata.num_rows
    if n == 0:
        raise DataError(f"{path}: the table has no rows")
    stat = path.stat()
    # One entry per table: named by its path, then its size and mtime. A rewritten table gets a new entry and its
    # older ones are deleted once the new one is in place, so a table updated daily keeps one decoded copy in the
    # cache, not one per day. The current entry is never deleted, so processes (torchrun's ranks) that decode the
    # same table at once all find it; one still reading an older entry keeps its open file until it closes it.
    table_key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    target = cache / f"{table_key}-{stat.st_size}-{stat.st_mtime_ns}.npy"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            # written with plain writes, not a memory map: a map's dirty pages count as this process's memory
            with open(partial, "wb") as out:
                np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                           "fortran_order": False, "shape": (n, len(features))})
                start = 0
                for batch in table.iter_batches(batch_size=65_536, columns=features):
                    values = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                                              for c in features])  # (b, D); a null becomes NaN
                    bad = ~np.isfinite(values)
                    if bad.any():
                        i, j = np.argwhere(bad)[0]
                        raise DataError(f"{path}: row {start + i}, column {features[j]!r} is missing or not finite "
                                        "in float32")
                    out.write(np.ascontiguousarray(values).data)
                    start += len(values)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        for stale in cache.glob("*.npy"):  # this table's older entries, and entries named before this scheme
            older = stale.name.startswith(f"{table_key}-") or LEGACY_PARQUET_ENTRY.fullmatch(stale.name)
            if older and stale != target:
                stale.unlink(missing_ok=True)
    labels, class_names = None, None
    if label_column in schema.names:
        column = table.read(columns=[label_column]).column(0)
        if pa.types.is_integer(column.type) and column.null_count == 0:
            labels = column.to_numpy().astype(np.int64)
        else:
            cells = np.asarray(column.cast(pa.string()).to_pylist(), dtype=object)
            class_names = tuple(sorted({str(c) for c in cells}))
            labels = np.searchsorted(np.asarray(class_names, dtype=object), cells.astype(str)).astype(np.int64)
    return target, labels, features, class_names


def open_npy(path: Path, name: str | None = None, workers: int = 0, finite: bool = False) -> FileArray:
    """A ``.npy`` file's items, read on demand, after checking its header, size and (for floats, in one streaming
    pass, unless ``finite`` says that was checked as it was written) that every value is finite; ``name`` for
    messages (default ``npy:PATH``). One-line ``DataError`` for anything unreadable."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise DataError(f"{path}: not a .npy file ({str(e).splitlines()[0]})") from None
    if dtype.hasobject or dtype.kind not in "uifb":
        raise DataError(f"{path}: array dtype {dtype} is not numeric")
    if fortran and len(shape) > 1:
        raise DataError(f"{path}: is stored in Fortran order; streaming reads C-ordered arrays "
                        "(np.save(path, np.ascontiguousarray(x)))")
    if len(shape) < 2 or shape[0] == 0 or int(np.prod(shape[1:])) == 0:
        raise DataError(f"{path}: expected an array of items (N, ...), got shape {shape}")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise DataError(f"{path}: truncated: its header promises {shape} {dtype} ({expected} bytes), the file has "
                        f"{size}")
    stored = (shape[0], 1, *shape[1:]) if len(shape) == 3 else tuple(shape)
    channels_last = len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3)
    if len(shape) > 4 or (len(shape) == 4 and not channels_last and shape[1] not in (1, 3)):
        raise DataError(f"{path}: cannot read shape {shape} as vectors (N, D) or images (N, C, H, W)")
    items = FileArray(_File(path, dtype, stored, offset), name or f"npy:{path}", channels_last=channels_last,
                      workers=workers)
    if items.dtype != np.uint8 and not finite:
        items.value_range()  # the one pass that finds a NaN or infinity before training starts
    return items


INDEX_VERSION = 1


def _folder_index(root: Path, cache: Path) -> dict:
    """An image folder's index: its files (relative paths, sorted), each one's (width, height) and mode. Built once
    (every file opened, its header read and, for PNG, its chunks' checksums verified, so a corrupt or truncated
    image is a one-line error before training starts) and kept as JSON in ``cache``, with the modification time of
    every sub-folder: adding, removing or renaming a file changes its folder's, and the index is built again."""
    from PIL import Image, UnidentifiedImageError

    root = root.resolve()
    target = cache / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.json"
    try:
        index = json.loads(target.read_text())
        if index.get("version") == INDEX_VERSION and index.get("root") == str(root) and all(
                (root / d).stat().st_mtime_ns == t for d, t in index["folders"].items()):
            return index
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, stale or unreadable: build it
    from tqdm.auto import tqdm

    files = image_files(root)
    sizes, modes = [], []
    # about 16,000 files a second here: a bar for folders that take more than a moment (cleared when done, so a
    # failure still ends in one line)
    for path in tqdm(files, desc=f"indexing {root.name}", unit="image", leave=False, mininterval=1,
                     disable=len(files) < 20_000 or None):
        try:
            with Image.open(path) as im:
                sizes.append(im.size)
                modes.append(im.mode)
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
    folders = {path.parent.relative_to(root).as_posix() for path in files} | {"."}
    index = {"version": INDEX_VERSION, "root": str(root),
             "folders": {d: (root / d).stat().st_mtime_ns for d in sorted(folders)},
             "files": [path.relative_to(root).as_posix() for path in files], "sizes": sizes, "modes": modes}
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(index))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return index


def open_image_folder(root: Path, image_size: tuple[int, int] | None, channels: int | None, cache: Path,
                      workers: int = 0) -> tuple[FileArray, np.ndarray | None, tuple[str, ...] | None]:
    """An image folder's images as items (N, C, H, W) uint8, decoded a batch at a time (by ``workers`` processes
    in training), with their labels (N,) and class names from the sub-folders (None for a flat folder). Size and
    channels come from the cached index (``_folder_index``) by ``formats.folder_shape``; loading a folder into
    memory reads every item of this same array."""
    root = Path(root)
    index = _folder_index(root, cache)
    files = [root / f for f in index["files"]]
    shape = folder_shape(root, files, [tuple(s) for s in index["sizes"]], index["modes"], image_size, channels)
    labels, names = folder_labels(root, files)
    return FileArray(_Folder(files, shape), f"folder:{root}", workers=workers), labels, names

