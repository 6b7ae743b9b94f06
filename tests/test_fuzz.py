"""Property-based fuzzing of the parsers: any bytes either parse or raise DataError, never anything else."""
from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaekit.data.formats import read_amat, read_array_file, read_csv, read_idx
from vaekit.errors import DataError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parse(reader, name: str, data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            return reader(path)
        except DataError as e:
            assert name in str(e) and "\n" not in str(e)
            return None


@FUZZ
@given(st.binary(max_size=300))
def test_idx_never_crashes_on_random_bytes(data):
    _parse(read_idx, "x-idx3-ubyte", data)
    _parse(read_idx, "x-idx3-ubyte.gz", data)


@FUZZ
@given(st.lists(st.integers(0, 6), min_size=1, max_size=3), st.integers(-3, 3), st.sampled_from([0x08, 0x09, 0x0D]))
def test_idx_header_and_payload_must_agree(dims, delta, code):
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0D: np.dtype(">f4")}[code]
    n = int(np.prod(dims)) * np.dtype(dtype).itemsize
    data = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + b"\x01" * max(0, n + delta)
    out = _parse(read_idx, "y-idx.gz", gzip.compress(data))
    assert (out is not None) == (delta == 0 or (n == 0 and delta < 0))
    if out is not None:
        assert out.shape == tuple(dims)


@FUZZ
@given(st.lists(st.text(alphabet="01 \n2x", max_size=12), max_size=6))
def test_amat_accepts_only_rows_of_zeros_and_ones(rows):
    out = _parse(lambda p: read_amat(p, width=3), "z.amat", "\n".join(rows).encode())
    if out is not None:
        assert out.shape[1] == 3 and set(np.unique(out)) <= {0, 1}


@FUZZ
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                                   st.sampled_from(["", "x", "1e3", " 2 "])), min_size=1, max_size=4),
                max_size=6))
def test_csv_gives_finite_floats_or_a_clear_error(rows):
    text = "a,b,c,d\n" + "\n".join(",".join(r) for r in rows)
    out = _parse(read_csv, "w.csv", text.encode())
    if out is not None:
        values, labels, names, _ = out
        assert values.dtype == np.float32 and np.isfinite(values).all() and values.shape[1] == len(names)


@FUZZ
@given(st.binary(max_size=400))
def test_npy_and_npz_never_crash_on_random_bytes(data):
    _parse(read_array_file, "v.npy", b"\x93NUMPY" + data)
    _parse(read_array_file, "v.npz", b"PK\x03\x04" + data)
