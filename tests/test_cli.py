"""The CLI, run in-process: each command works end to end, and bad input exits 2 with one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main


def test_train_evaluate_sample_reconstruct(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "64,32", "--latent-dim", "4",
                 "--run-dir", str(run), "--quiet"]) == 0
    assert "run folder:" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"loss", "recon", "kl", "n"} and result["n"] == 180
    assert result["loss"] == pytest.approx(result["recon"] + result["kl"])
    assert main(["sample", str(run), "-n", "12", "--out", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (4 * 34 + 2, 3 * 34 + 2)
    assert main(["sample", str(run), "-n", "7", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["x"].shape == (7, 1, 8, 8)
    assert main(["reconstruct", str(run), "-n", "6", "--out", str(tmp_path / "r.png")]) == 0
    with Image.open(tmp_path / "r.png") as im:
        assert im.size == (6 * 34 + 2, 2 * 34 + 2)


def test_python_dash_m_works():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "vaekit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "evaluate" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "/nonexistent/run"], "no such run folder"),
    (["train", "--dataset", "nope", "--quiet"], "unknown data spec 'nope'"),
    (["train", "--dataset", "digits", "--latent-dim", "0", "--quiet"], "latent dim must be at least 1"),
    (["train", "--dataset", "digits", "--batch-size", "100000", "--quiet"], "larger than the training split"),
    (["train", "--dataset", "csv:/nonexistent.csv", "--quiet"], "nonexistent.csv: cannot read"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_sample_does_not_clobber_an_existing_file(tmp_path, digits_run, capsys):
    out = tmp_path / "s.png"
    out.write_bytes(b"precious")
    assert main(["sample", str(digits_run), "--out", str(out)]) == 2
    assert out.read_bytes() == b"precious"
