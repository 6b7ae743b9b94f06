"""Items read from a memory-mapped ``.npy`` file a batch at a time: data larger than memory (issue #16).

``MappedArray`` stands where an in-memory array stands in ``ArrayData``: a split is a row index into the one
mapping (no copy), and a table's standardisation is applied to each batch as it is read. The training loop
reads it through ``MappedTensor``, which answers the few tensor operations the loop uses (``len``, slices,
``index_select``, ``split``) with tensors of just those rows.

Memory stays bounded: the pages a read touches count in this process's resident memory while mapped, so they are
released (``madvise(MADV_DONTNEED)``) after every ``RELEASE_EVERY`` bytes read; the OS page cache keeps them for
the next epoch if it has room. The epoch's order is a permutation of all N rows (8 bytes each), so shuffling is
random over the whole file.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import DataError

RELEASE_EVERY = 256 << 20  # bytes read through the mapping between releases of its pages
CHUNK_BYTES = 64 << 20  # one read of a streaming pass (statistics, checks)
AUTO_SHARE = 0.25  # --stream auto maps a file larger than this share of the memory available


class _Mapping:
    """One file's read-only mapping and its array view (N, *stored_shape); counts bytes read to release pages."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], offset: int):
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = int(np.prod(shape))
        self.array = np.frombuffer(self.map, dtype=dtype, count=count, offset=offset).reshape(shape)
        self.unreleased = 0

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows (R,) sorted ascending -> a copy (R, *stored_shape)."""
        out = self.array[rows]
        self.unreleased += out.nbytes
        if self.unreleased >= RELEASE_EVERY:
            self.map.madvise(mmap.MADV_DONTNEED)  # drops the pages from this process; the page cache keeps them
            self.unreleased = 0
        return out


class MappedArray:
    """Items (N, *item_shape) of a mapped ``.npy`` file: uint8 as stored, other numbers as float32.

    ``rows`` (N,) selects and orders the file's items (None: all, in order); ``channels_last`` files (N, H, W, C)
    are read as (N, C, H, W); ``standardize`` (mean, std), each (D,), is applied to every read of a table.
    """

    def __init__(self, mapping: _Mapping, name: str, rows: np.ndarray | None = None, channels_last: bool = False,
                 standardize: tuple[np.ndarray, np.ndarray] | None = None):
        self._mapping, self.name, self.rows = mapping, name, rows
        self.channels_last, self.standardize = channels_last, standardize
        stored = mapping.array.shape[1:]
        self.item_shape = (stored[2], stored[0], stored[1]) if channels_last else tuple(stored)
        self.dtype = np.dtype(np.uint8) if mapping.array.dtype in (np.uint8, np.bool_) else np.dtype(np.float32)
        self._range: tuple[float, float] | None = None

    # --- the array interface ArrayData uses ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._mapping.array) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.item_shape)) * self.dtype.itemsize

    def _with(self, **changes) -> "MappedArray":
        fields = dict(mapping=self._mapping, name=self.name, rows=self.rows, channels_last=self.channels_last,
                      standardize=self.standardize)
        return MappedArray(**{**fields, **changes})

    def __getitem__(self, key):
        """A slice or an index array -> a MappedArray of those rows (no copy); an int -> that item (array)."""
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

    def standardized(self, mean: np.ndarray, std: np.ndarray) -> "MappedArray":
        return self._with(standardize=(mean, std))

    # --- reading ------------------------------------------------------------------------------------------
    def read(self, positions: np.ndarray) -> np.ndarray:
        """The items at ``positions`` (R,) of this array, in that order: (R, *item_shape), a copy."""
        rows = positions if self.rows is None else self.rows[positions]
        order = np.argsort(rows, kind="stable")  # ascending file offsets: sequential where the rows allow
        stored = self._mapping.read(rows[order])
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


class MappedTensor:
    """A MappedArray read as the training loop reads a stored tensor: slices and ``index_select`` give tensors
    of those rows on ``device``; the rest of the file is never in memory."""

    def __init__(self, items: MappedArray, device: torch.device):
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

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("a mapped split is read by slices and index_select")
        return self._tensor(np.arange(len(self))[key])

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        assert dim == 0
        return self._tensor(index.cpu().numpy())

    def split(self, size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), size):
            yield self[start:start + size]


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux's MemAvailable), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_stream(path: Path, stream: str) -> bool:
    """``--stream``: on, off, or auto (a file larger than ``AUTO_SHARE`` of the available memory)."""
    if stream != "auto":
        return stream == "on"
    return path.stat().st_size > AUTO_SHARE * available_memory()


def open_npy(path: Path) -> MappedArray:
    """Map a ``.npy`` file's items after checking its header, size and (for floats, in one streaming pass) that
    every value is finite. One-line ``DataError`` for anything unreadable."""
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
    items = MappedArray(_Mapping(path, dtype, stored, offset), f"npy:{path}", channels_last=channels_last)
    if items.dtype != np.uint8:
        items.value_range()  # the one pass that finds a NaN or infinity before training starts
    return items
