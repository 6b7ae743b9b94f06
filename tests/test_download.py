"""Downloads against a local HTTP server on 127.0.0.1 serving ../shared/data; never the internet."""
from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import replace

import numpy as np
import pytest

from vaekit.config import DataConfig
from vaekit.data import load_data, named
from vaekit.data.download import cache_dir
from vaekit.errors import DataError


@pytest.fixture
def local_mirror(tmp_path, shared_data, monkeypatch):
    """Serve a copy of the shared data on 127.0.0.1; the official mirrors are replaced by it."""
    root = tmp_path / "www"
    (root / "mnist").mkdir(parents=True)
    for f in (shared_data / "mnist").iterdir():
        (root / "mnist" / f.name).write_bytes(f.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(named, "NAMED", {k: _offline(v) for k, v in named.NAMED.items()})
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    yield root
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _offline(ds):
    return replace(ds, mirrors=())


def test_download_from_local_mirror_verifies_and_caches(local_mirror):
    data = load_data("mnist:test", DataConfig())
    assert data.x.shape == (10000, 1, 28, 28) and np.bincount(data.y)[1] == 1135
    cached = sorted(p.name for p in (cache_dir() / "mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no .part left over


def test_mismatching_download_is_refused_and_not_kept(local_mirror):
    path = local_mirror / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_data("mnist:test", DataConfig())
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert not (cache_dir() / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (cache_dir() / "mnist").iterdir() if p.name.endswith(".part")]


def test_unreachable_mirror_gives_a_clear_error(local_mirror, monkeypatch):
    monkeypatch.setenv("VAEKIT_MIRROR", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(DataError, match="download failed from every mirror"):
        load_data("mnist:test", DataConfig())
