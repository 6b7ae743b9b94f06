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
from vaekit.data.streaming import FileArray


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
                              run_dir=tmp_path / mode, progress=False, pictures=mode == "on")
        assert isinstance(load_splits(result.config.data).train.x, FileArray) == (mode == "on")
        metrics = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
        summaries[mode] = ([(m["train_loss"], m["val_loss"]) for m in metrics],
                           json.loads((tmp_path / mode / "summary.json").read_text())["test"])
    assert summaries["on"] == summaries["off"]  # the same bytes, the same order, the same standardisation
    assert (tmp_path / "on" / "report.html").is_file() and (tmp_path / "on" / "latent.png").is_file()
    losses = [train for train, _ in summaries["on"][0]]
    assert losses[-1] < losses[0]  # and it learns


def test_a_split_of_a_mapped_file_reads_the_rows_it_names(files):
    splits = load_splits(DataConfig(dataset=f"npy:{files / 'last.npy'}", stream="on"))
    loaded = load_splits(DataConfig(dataset=f"npy:{files / 'last.npy'}", stream="off"))
    for part in ("train", "val", "test"):
        mapped, memory = getattr(splits, part).x, getattr(loaded, part).x
        assert isinstance(mapped, FileArray) and mapped.shape == memory.shape and mapped.shape[1:] == (1, 8, 8)
        assert np.array_equal(np.asarray(mapped), memory)
        pick = np.array([5, 0, 17, 5])
        assert np.array_equal(mapped.read(pick), memory[pick])  # any order, repeats kept
        assert np.array_equal(np.asarray(mapped[3:40:7]), memory[3:40:7])


def test_auto_maps_a_file_larger_than_a_quarter_of_the_available_memory(files, monkeypatch):
    assert not isinstance(load_splits(DataConfig(dataset=f"npy:{files / 'images.npy'}")).train.x, FileArray)
    monkeypatch.setattr(streaming, "available_memory", lambda: 4 * (files / "images.npy").stat().st_size - 1)
    assert isinstance(load_splits(DataConfig(dataset=f"npy:{files / 'images.npy'}")).train.x, FileArray)


def test_reading_a_file_in_random_batches_keeps_it_out_of_resident_memory(tmp_path):
    """64 MB of items read in random batches of 128: the process's resident memory grows by far less than the
    file (a memory map of it grew by the whole file)."""
    def resident() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        pytest.skip("no /proc/self/status here")

    rng = np.random.default_rng(0)
    items = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(80_000, 28, 28))
    items[:] = rng.integers(0, 256, (28, 28), dtype=np.uint8)  # 63 MB on disk
    del items
    data = load_splits(DataConfig(dataset=f"npy:{tmp_path / 'big.npy'}", stream="on")).train.x
    data.read(np.arange(128))  # warm the first allocations
    before = resident()
    for index in np.array_split(rng.permutation(len(data)), len(data) // 128):
        batch = data.read(index)
    assert batch.shape == (len(index), 1, 28, 28)
    assert resident() - before < 16 << 20


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
    assert "--stream on maps npy:PATH and parquet:PATH files" in err


@pytest.fixture()
def wine_parquet(tmp_path, monkeypatch):
    """Wine (178 rows, 13 features) as Parquet with a text label column; the cache in tmp_path."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from sklearn.datasets import load_wine

    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    X, y = load_wine(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["label"] = np.array(["barolo", "grignolino", "barbera"])[y]
    frame.to_parquet(tmp_path / "wine.parquet", row_group_size=50)
    return tmp_path / "wine.parquet", frame


def test_a_parquet_table_streams_as_it_loads_with_its_labels(wine_parquet, tmp_path):
    path, frame = wine_parquet
    tests = {}
    for mode in ("on", "off"):
        result = vaekit.train(dataset=f"parquet:{path}", stream=mode, epochs=30, seed=0, run_dir=tmp_path / mode,
                              progress=False, pictures=False)
        tests[mode] = result.test
    assert tests["on"] == tests["off"]
    data = vaekit.load_data(f"parquet:{path}")
    assert data.class_names == ("barbera", "barolo", "grignolino")  # text classes, sorted
    assert np.array_equal(np.asarray(data.class_names)[data.y], frame["label"].to_numpy())
    assert np.allclose(np.asarray(data.x), frame.drop(columns="label").to_numpy(np.float32))
    cached = list((tmp_path / "cache" / "parquet").glob("*.npy"))
    assert len(cached) == 1  # decoded once; the second run and load_data reuse it
    splits = load_splits(DataConfig(dataset=f"parquet:{path}", stream="on"))
    assert np.allclose(np.asarray(splits.train.x).mean(0), 0, atol=1e-5)  # standardised by the training split


def test_bad_parquet_tables_are_one_line_errors_that_leave_nothing(wine_parquet, tmp_path, capsys):
    path, frame = wine_parquet
    text = frame.assign(grape=["nebbiolo"] * len(frame))
    text.to_parquet(tmp_path / "text.parquet")
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"parquet:{tmp_path / 'text.parquet'}"], tmp_path / "r1")
    assert "column 'grape'" in err and "not a number" in err
    holes = frame.copy()
    holes.loc[120, "f4"] = None
    holes.to_parquet(tmp_path / "holes.parquet")
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"parquet:{tmp_path / 'holes.parquet'}"], tmp_path / "r2")
    assert "row 120, column 'f4' is missing" in err
    assert not list((tmp_path / "cache" / "parquet").glob("*"))  # no half-written cache file either
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    err = _one_line_exit_2(capsys, ["train", "--dataset", f"parquet:{tmp_path / 'junk.parquet'}"], tmp_path / "r3")
    assert "not a readable Parquet file" in err
