"""Parsers for the file formats vaekit reads. Each raises ``DataError`` naming the file and the problem.

All parsers return NumPy arrays held in memory: uint8 where the source is uint8, float32 otherwise.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_bytes(path: Path) -> bytes:
    """Read a file, gunzipping when the name ends in ``.gz``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if str(path).endswith(".gz"):
        if not raw:
            raise DataError(f"{path}: empty file (expected gzip data)")
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip ({e})") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format): magic ``00 00 <dtype> <ndim>``, big-endian dims, payload."""
    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 4:
        raise DataError(f"{path}: not an IDX file (magic bytes {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes of data) "
                        f"but the file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_amat(path: Path, width: int = 784) -> np.ndarray:
    """Parse a binarized-MNIST ``.amat`` file: one image a line, ``width`` values of 0/1 separated by spaces."""
    data = read_bytes(path)
    line = 2 * width  # "v v ... v\n"
    buf = np.frombuffer(data, np.uint8)
    if len(buf) and len(buf) % line == 0:
        rows = buf.reshape(-1, line)
        values = rows[:, 0::2]
        if (rows[:, 1:-1:2] == ord(" ")).all() and (rows[:, -1] == ord("\n")).all() \
                and np.isin(values, (ord("0"), ord("1"))).all():
            return (values - ord("0")).astype(np.uint8)
    return _read_amat_slow(path, data, width)


def _read_amat_slow(path: Path, data: bytes, width: int) -> np.ndarray:
    """Line-by-line parse; only reached when the fast layout check fails, to name the bad line."""
    lines = data.decode("ascii", errors="replace").splitlines()
    if not lines:
        raise DataError(f"{path}: empty file")
    out = np.empty((len(lines), width), np.uint8)
    for i, text in enumerate(lines, 1):
        parts = text.split()
        if len(parts) != width:
            raise DataError(f"{path}: line {i} has {len(parts)} values, expected {width}")
        if any(p not in ("0", "1") for p in parts):
            bad = next(p for p in parts if p not in ("0", "1"))
            raise DataError(f"{path}: line {i} has the value {bad[:20]!r}; binarized data must be 0 or 1")
        out[i - 1] = np.array(parts, np.uint8)
    return out


def read_csv(path: Path, label_column: str = "label"
             ) -> tuple[np.ndarray, np.ndarray | None, list[str], tuple[str, ...] | None]:
    """Parse a numeric CSV with a header. Returns (features (N, D) float32, labels (N,) int64 or None,
    feature names, class names or None).

    A column named ``label_column`` is kept aside as labels (for plots and evaluation only). Integer labels
    are kept as they are; any other labels ("cat", "normal", 0.5) are classes 0, 1, ... in sorted order of
    their text, and their names are returned.
    """
    text = read_bytes(path).decode("utf-8-sig", errors="replace")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"{path}: empty CSV (expected a header and numeric rows)")
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise DataError(f"{path}: CSV has a header but no rows")
    try:
        [float(h) for h in header]
        raise DataError(f"{path}: the first row is numeric; the CSV needs a header row of column names")
    except ValueError:
        pass
    label_j = header.index(label_column) if label_column in header else None
    values = np.empty((len(rows) - 1, len(header)), np.float64)
    label_cells = []
    for i, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path}: row {i} has {len(row)} cells, the header has {len(header)}")
        for j, cell in enumerate(row):
            cell = cell.strip()
            if not cell:
                raise DataError(f"{path}: row {i}, column {header[j]!r} is empty (missing value)")
            if j == label_j:
                label_cells.append(cell)
                values[i - 2, j] = 0.0
                continue
            try:
                values[i - 2, j] = float(cell)
            except ValueError:
                raise DataError(f"{path}: row {i}, column {header[j]!r} is not a number: {cell[:30]!r}") from None
    with np.errstate(over="ignore"):
        finite = np.isfinite(values.astype(np.float32))  # float32 is what the model sees
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise DataError(f"{path}: row {i + 2}, column {header[j]!r} is not finite in float32 ({values[i, j]})")
    labels, class_names = None, None
    if label_j is not None:
        labels, class_names = _labels_from_cells(label_cells)
        values = np.delete(values, label_j, axis=1)
        header = header[:label_j] + header[label_j + 1:]
    if values.shape[1] == 0:
        raise DataError(f"{path}: no feature columns")
    return values.astype(np.float32), labels, header, class_names


def _labels_from_cells(cells: list[str]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer label cells as they are; otherwise classes numbered in sorted order of their text, with names."""
    try:
        numbers = [float(c) for c in cells]
        if all(math.isfinite(v) and v.is_integer() and abs(v) < 2**62 for v in numbers):
            return np.array(numbers, np.float64).astype(np.int64), None
    except ValueError:
        pass
    names = tuple(sorted(set(cells)))
    index = {name: k for k, name in enumerate(names)}
    return np.array([index[c] for c in cells], np.int64), names


def read_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Load ``.npy`` or ``.npz`` without pickle. An npz holds ``x`` (or one array) and optionally ``y``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:  # our handle, closed even when a corrupt file fails inside np.load
            loaded = np.load(f, allow_pickle=False)
            x, y = (loaded, None) if isinstance(loaded, np.ndarray) else _npz_arrays(path, loaded)
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: holds pickled objects, which vaekit never loads") from None
        raise DataError(f"{path}: not a valid NumPy file ({str(e).splitlines()[0][:100]})") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, zlib.error from truncated files
        raise DataError(f"{path}: not a valid NumPy file ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:100]})") from None
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(x)} items but {len(y)} labels")
    return x, y


def _npz_arrays(path: Path, npz) -> tuple[np.ndarray, np.ndarray | None]:
    with npz:
        keys = list(npz.keys())
        xkey = next((k for k in ("x", "X", "images", "data", "codes") if k in keys), keys[0] if len(keys) == 1 else None)
        if xkey is None:
            raise DataError(f"{path}: npz has arrays {keys}; name the data array 'x' (and labels 'y')")
        ykey = next((k for k in ("y", "labels") if k in keys), None)
        return npz[xkey], (npz[ykey] if ykey else None)


GRAY_MODES = ("L", "1", "I", "I;16", "LA")  # modes read as one channel; any other makes a folder RGB


def image_files(root: Path) -> list[Path]:
    """Every PNG/JPEG under ``root``, sorted; a one-line DataError for a missing or image-less folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no PNG or JPEG images in this folder")
    return files


def folder_labels(root: Path, files: list[Path]) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Sub-folder names as class labels (N,) and their sorted names; None, None for a flat folder."""
    parents = [p.parent.relative_to(root).as_posix() for p in files]
    if len(set(parents)) < 2:
        return None, None
    names = tuple(sorted(set(parents)))
    return np.searchsorted(np.asarray(names, dtype=object), np.asarray(parents, dtype=object)).astype(np.int64), names


def folder_shape(root: Path, files: list[Path], sizes: list[tuple[int, int]], modes: list[str],
                 image_size: tuple[int, int] | None, channels: int | None) -> tuple[int, int, int]:
    """The (C, H, W) every image of a folder is read as, from each image's (width, height) and mode: the first
    image's size unless ``image_size`` is given (images of differing sizes without it are an error), RGB if any
    image is in colour unless ``channels`` is given."""
    if image_size is None and len(set(sizes)) > 1:
        (w0, h0), i = sizes[0], next(i for i, size in enumerate(sizes) if size != sizes[0])
        w1, h1 = sizes[i]
        raise DataError(f"{root}: images differ in size ({files[0].name} is {h0}x{w0}, {files[i].name} is {h1}x{w1}); "
                        "pass --image-size to resize them all to one size")
    if channels is None:
        channels = 3 if any(m not in GRAY_MODES for m in modes) else 1
    if channels not in (1, 3):
        raise DataError(f"{root}: channels must be 1 or 3, got {channels}")
    height, width = image_size if image_size else (sizes[0][1], sizes[0][0])
    return channels, height, width


def image_array(im, shape: tuple[int, int, int]) -> np.ndarray:
    """A loaded PIL image as uint8 (C, H, W) of ``shape``: 16/32-bit grayscale scaled to 8 bits, converted to L or
    RGB, resized (bilinear) when its size differs. The one conversion of both the in-memory and the streamed
    folder readers, so the two give the same pixels."""
    from PIL import Image

    channels, height, width = shape
    if im.mode.startswith("I"):  # 16/32-bit grayscale: scale to 8 bits instead of clipping
        a = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.clip(np.round(a / 257 if a.max() > 255 else a), 0, 255).astype(np.uint8))
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (width, height):
        im = im.resize((width, height), Image.BILINEAR)
    a = np.asarray(im)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def decode_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image file as uint8 (C, H, W) of ``shape``; a one-line DataError naming it if it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return image_array(im, shape)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
