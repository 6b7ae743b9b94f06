"""Streaming (issue #16): npy files mapped and read a batch at a time train exactly as when loaded; bad files give
one line and leave nothing behind. The memory and speed figures are bench/streaming.py's."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

import vaekit
from vaekit.cli import main
from vaekit.config import DataConfig
from vaekit.data import load_splits, streaming
from vaekit.data.streaming import MappedArray


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The digits as a uint8 image file (N, 8, 8), as a channels-last file (N, 8, 8, 1) and as a real-valued
    table (N, 64) outside [0, 1] (standardised)."""
    folder = tmp_path_factory.mktemp("npy")
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)
    np.save(folder / "images.npy", images)
    np.save(folder / "last.npy", images[..., None])
    np.save(folder / "table.npy", digits.data * 3.0 - 5.0)
    return folder


@pytest.mark.parametrize("name", ["images.npy", "table.npy"])
def test_streamed_and_in_memory_training_give_the_same_metrics(files, tmp_path, name):
    summaries = {}
    for mode in ("on", "off"):
        result = vaekit.train(dataset=f"npy:{files / name}", stream=mode, epochs=4, seed=3,
                              run_dir=tmp_path / mode, progress=False, pictures=False)
        assert isinstance(load_splits(result.config.data).train.x, MappedArray) == (mode == "on")
        metrics = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
        summaries[mode] = ([(m["train_loss"], m["val_loss"]) for m in metrics],
                           json.loads((tmp_path / mode / "summary.json").read_text())["test"])
    assert summaries["on"] == summaries["off"]  # the same bytes, the same order, the same standardisation
    losses = [train for train, _ in summaries["on"][0]]
    assert losses[-1] < losses[0]  # and it learns


def test_a_split_of_a_mapped_file_reads_the_rows_it_names(files):
    splits = load_splits(DataConfig(dataset=f"npy:{files / 'last.npy'}", stream="on"))
    loaded = load_splits(DataConfig(dataset=f"npy:{files / 'last.npy'}", stream="off"))
    for part in ("train", "val", "test"):
        mapped, memory = getattr(splits, part).x, getattr(loaded, part).x
        assert isinstance(mapped, MappedArray) and mapped.shape == memory.shape and mapped.shape[1:] == (1, 8, 8)
        assert np.array_equal(np.asarray(mapped), memory)
        pick = np.array([5, 0, 17, 5])
        assert np.array_equal(mapped.read(pick), memory[pick])  # any order, repeats kept
        assert np.array_equal(np.asarray(mapped[3:40:7]), memory[3:40:7])


def test_auto_maps_a_file_larger_than_a_quarter_of_the_available_memory(files, monkeypatch):
    assert not isinstance(load_splits(DataConfig(dataset=f"npy:{files / 'images.npy'}")).train.x, MappedArray)
    monkeypatch.setattr(streaming, "available_memory", lambda: 4 * (files / "images.npy").stat().st_size - 1)
    assert isinstance(load_splits(DataConfig(dataset=f"npy:{files / 'images.npy'}")).train.x, MappedArray)


def test_pages_read_are_released_every_window(files, monkeypatch):
    released = []
    items = load_splits(DataConfig(dataset=f"npy:{files / 'images.npy'}", stream="on")).train.x
    monkeypatch.setattr(streaming, "RELEASE_EVERY", 64 * 100)  # 100 items of 64 bytes
    mapping = items._mapping
    mapping.unreleased = 0
    original = mapping.map

    class Spy:
        def madvise(self, option, *args):
            released.append(option)
            return original.madvise(option, *args)

    mapping.map = Spy()
    try:
        for start in range(0, 1000, 50):
            items.read(np.arange(start, start + 50))
    finally:
        mapping.map = original
    assert len(released) == 10 and set(released) == {streaming.mmap.MADV_DONTNEED}


def _one_line_exit_2(capsys, args, run_dir) -> str:
    assert main(args + ["--run-dir", str(run_dir), "--quiet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vaekit: error:")
    assert not run_dir.exists()  # nothing left behind
    return err


def test_bad_mapped_files_are_one_line_errors_that_leave_nothing(files, tmp_path, capsys):
    whole = (files / "images.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:len(whole) // 2])
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"npy:{tmp_path / 'cut.npy'}", "--stream", "on"],
                           tmp_path / "r1")
    assert "cut.npy: truncated" in err
    table = np.load(files / "table.npy")
    table[700, 3] = np.nan
    np.save(tmp_path / "nan.npy", table)
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"npy:{tmp_path / 'nan.npy'}", "--stream", "on"],
                           tmp_path / "r2")
    assert "nan.npy: contains NaN or infinite values" in err
    np.save(tmp_path / "text.npy", np.array([["a", "b"]] * 20))
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"npy:{tmp_path / 'text.npy'}", "--stream", "on"],
                           tmp_path / "r3")
    assert "is not numeric" in err
    np.save(tmp_path / "fortran.npy", np.asfortranarray(table[:, :10]))
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"npy:{tmp_path / 'fortran.npy'}", "--stream", "on"],
                           tmp_path / "r4")
    assert "Fortran order" in err
    err = _one_line_exit_2(capsys, ["train", "--dataset", "digits", "--stream", "on"], tmp_path / "r5")
    assert "--stream on maps npy:PATH files" in err
