"""Shared fixtures: the real datasets in ../shared/data, and one small trained run reused by many tests."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

import vaekit

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """The shared datasets: $VAEKIT_SHARED_DATA, else ``<repo>/../shared/data``, else, for a clone of a local
    repository (``git clone /work/main /tmp/x``), ``<origin>/../shared/data``. The first that exists."""
    beside = REPO.parent / "shared" / "data"
    candidates = [Path(p) for p in [os.environ.get("VAEKIT_SHARED_DATA")] if p] + [beside]
    try:
        origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), beside)


SHARED_DATA = _find_shared_data()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test may reach the network or the user's cache: the cache is a fresh folder, mirrors are unset."""
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.delenv("VAEKIT_MIRROR", raising=False)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), (f"the shared datasets are missing: {SHARED_DATA} (set $VAEKIT_SHARED_DATA to "
                                  "the folder holding mnist/, fashion-mnist/ and binarized-mnist/)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A VAE trained briefly on the embedded digits (about 2 s), with its run folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    os.environ.pop("VAEKIT_MIRROR", None)
    vaekit.train(dataset="digits", epochs=20, run_dir=run_dir, progress=False)
    return run_dir
