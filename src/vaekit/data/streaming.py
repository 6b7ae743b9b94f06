"""Items read from an ``.npy`` file a batch at a time: data larger than memory (issue #16).

``FileArray`` stands where an in-memory array stands in ``ArrayData``: a split is a row index into the one
file (no copy), and a table's standardisation is applied to each batch as it is read. The training loop reads it
through ``FileTensor``, which answers the few tensor operations the loop uses (``len``, slices, ``index_select``,
``split``) with tensors of just those rows.

Memory stays bounded: rows are read with ``preadv`` into fresh arrays, so the file's bytes live in the OS page
cache (which keeps them for the next epoch if it has room), never in this process's resident memory. The
epoch's order is a permutation of all N rows (8 bytes each), so shuffling is random over the whole file.
Parquet tables are decoded once, record batch by record batch, into such a file in the cache.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..errors import DataError

CHUNK_BYTES = 64 << 20  # one read of a streaming pass (statistics, checks)
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
        """Rows (R,) sorted ascending -> (R, *stored_shape): one ``preadv`` per run of consecutive rows."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        starts = np.r_[0, np.flatnonzero(np.diff(rows) != 1) + 1, len(rows)]
        flat = memoryview(out.reshape(len(rows), -1).view(np.uint8))
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
            want = (b - a) * self.row_bytes
            got = os.preadv(self.fd, [flat[a:b].cast("B")], self.offset + int(rows[a]) * self.row_bytes)
            if got != want:
                raise DataError(f"{self.path}: truncated while reading (rows {rows[a]}-{rows[b - 1]})")
        return out


class FileArray:
    """Items (N, *item_shape) of an ``.npy`` file read on demand: uint8 as stored, other numbers as float32.

    ``rows`` (N,) selects and orders the file's items (None: all, in order); ``channels_last`` files (N, H, W, C)
    are read as (N, C, H, W); ``standardize`` (mean, std), each (D,), is applied to every read of a table.
    """

    def __init__(self, source: _File, name: str, rows: np.ndarray | None = None, channels_last: bool = False,
                 standardize: tuple[np.ndarray, np.ndarray] | None = None):
        self._source, self.name, self.rows = source, name, rows
        self.channels_last, self.standardize = channels_last, standardize
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
                      standardize=self.standardize)
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
        rows = positions if self.rows is None else self.rows[positions]
        order = np.argsort(rows, kind="stable")  # ascending file offsets: sequential where the rows allow
        stored = self._source.read(rows[order])
        out = np.empty_like(stored)
        out[order] = stored
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

    def gather_ahead(self, indexes: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The rows of each index (B,) in turn, the next batch read on a background thread while the caller
        trains on this one: a batch of 512 random rows is 512 ``preadv`` calls (about 2.5 ms here, a quarter of a
        default MNIST step), which release the GIL and so overlap the step's compute. At most two batches are
        in memory at once."""
        with ThreadPoolExecutor(1, thread_name_prefix="vaekit-read") as pool:
            pending = None
            for index in indexes:
                upcoming = pool.submit(self.index_select, 0, index)
                if pending is not None:
                    yield pending.result()
                pending = upcoming
            if pending is not None:
                yield pending.result()


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
        table = pq.ParquetFile(path)
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
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    target = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, len(features)))
            start = 0
            for batch in table.iter_batches(batch_size=65_536, columns=features):
                values = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                                          for c in features])  # (b, D); a null becomes NaN
                bad = ~np.isfinite(values)
                if bad.any():
                    i, j = np.argwhere(bad)[0]
                    raise DataError(f"{path}: row {start + i}, column {features[j]!r} is missing or not finite in "
                                    "float32")
                out[start:start + len(values)] = values
                start += len(values)
            out.flush()
            del out
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
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


def open_npy(path: Path, name: str | None = None) -> FileArray:
    """A ``.npy`` file's items, read on demand, after checking its header, size and (for floats, in one streaming
    pass) that every value is finite; ``name`` for messages (default ``npy:PATH``). One-line ``DataError`` for
    anything unreadable."""
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
    items = FileArray(_File(path, dtype, stored, offset), name or f"npy:{path}", channels_last=channels_last)
    if items.dtype != np.uint8:
        items.value_range()  # the one pass that finds a NaN or infinity before training starts
    return items
