"""Shared fixtures: the real datasets in ../shared/data, and one small trained run reused by many tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import vaekit

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test may reach the network or the user's cache: the cache is a fresh folder, mirrors are unset."""
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.delenv("VAEKIT_MIRROR", raising=False)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the shared datasets are missing: {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A VAE trained briefly on the embedded digits (about 2 s), with its run folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    os.environ.pop("VAEKIT_MIRROR", None)
    vaekit.train(dataset="digits", epochs=20, run_dir=run_dir, progress=False)
    return run_dir
