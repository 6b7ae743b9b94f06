"""Streaming (issue #16): npy files mapped and read a batch at a time train exactly as when loaded; bad files give
one line and leave nothing behind. The memory and speed figures are bench/streaming.py's."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
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


def _train_both(spec: str, tmp_path, tag: str, **settings) -> dict:
    """Train on ``spec`` streamed and loaded (4 epochs, seed 3): per mode, the (train, val) losses per epoch and
    the test figures."""
    summaries = {}
    for mode in ("on", "off"):
        run = tmp_path / f"{tag}-{mode}"
        result = vaekit.train(dataset=spec, stream=mode, epochs=4, seed=3, run_dir=run, progress=False,
                              pictures=mode == "on" and tag == "exact", **settings)
        assert isinstance(load_splits(result.config.data).train.x, FileArray) == (mode == "on")
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        summaries[mode] = ([(m["train_loss"], m["val_loss"]) for m in metrics],
                           json.loads((run / "summary.json").read_text())["test"])
    return summaries


@pytest.mark.parametrize("name", ["images.npy", "table.npy"])
def test_streamed_and_in_memory_training_give_the_same_metrics(files, tmp_path, monkeypatch, name):
    """In the same order, a streamed file trains to exactly the loaded file's metrics; in its own order (blocks of
    rows shuffled, then rows within windows: ``shuffled_batches``) to a last validation loss within 3 %."""
    with monkeypatch.context() as m:
        m.setattr(FileArray, "shuffle_plan", lambda self, batch_size: (1, 1))  # every row on its own, as loaded
        exact = _train_both(f"npy:{files / name}", tmp_path, "exact")
    assert exact["on"] == exact["off"]  # the same bytes, the same order, the same standardisation
    assert (tmp_path / "exact-on" / "report.html").is_file() and (tmp_path / "exact-on" / "latent.png").is_file()
    losses = [train for train, _ in exact["on"][0]]
    assert losses[-1] < losses[0]  # and it learns
    own = _train_both(f"npy:{files / name}", tmp_path, "own")
    assert own["off"] == exact["off"]
    # the last validation loss (the digits table's test split holds items far outside the training rows' range,
    # whose loss swings with any change of the model: 111 loaded, 316 streamed in its own order)
    assert own["on"][0][-1][1] == pytest.approx(own["off"][0][-1][1], rel=0.03)


def test_a_streamed_epoch_visits_every_item_once_in_blocks_spread_over_the_file():
    from vaekit.training import shuffled_batches

    n, batch = 10_000, 100
    batches = list(shuffled_batches(n, batch, seed=7, block=32, window=20))
    order = torch.cat(batches)
    assert sorted(order.tolist()) == list(range(n))  # a permutation: every item once
    assert torch.equal(order, torch.cat(list(shuffled_batches(n, batch, seed=7, block=32, window=20))))  # seeded
    blocks_per_batch = [len(set((b // 32).tolist())) for b in batches]
    assert np.mean(blocks_per_batch) > 0.7 * (20 * batch / 32)  # a batch's rows come from most of its window's blocks
    spread = [float((b.max() - b.min()) / n) for b in batches]
    assert np.median(spread) > 0.9  # ...spread over the whole file, not one neighbourhood
    window_rows = [set(torch.cat(batches[i:i + 20]).tolist()) for i in range(0, len(batches), 20)]
    assert all(len({r // 32 for r in rows}) <= 2 * 20 * batch // 32 for rows in window_rows)  # few blocks a window


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


def test_a_file_loaded_into_memory_peaks_at_twice_its_size(tmp_path):
    """``--stream off`` copies each split once from the loaded array and lets the array go: twice the file's size
    at the peak. Taking the validation split from a copy of train + val made it ~2.9x (6.74 GiB for 2.35 GB)."""
    import tracemalloc

    n, size = 20_000, 20_000 * 28 * 28
    np.save(tmp_path / "items.npy", np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8))
    tracemalloc.start()  # numpy reports its arrays' buffers to tracemalloc
    try:
        splits = load_splits(DataConfig(dataset=f"npy:{tmp_path / 'items.npy'}", stream="off"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(splits.train), len(splits.val), len(splits.test)] == [16_200, 1_800, 2_000]
    assert 1.9 * size < peak < 2.2 * size


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
    assert "--stream on reads npy:PATH, parquet:PATH and folder:PATH data a batch at a time" in err


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
    assert tests["on"]["loss"] == pytest.approx(tests["off"]["loss"], rel=0.05)  # its own order (see above)
    data = vaekit.load_data(f"parquet:{path}")
    assert data.class_names == ("barbera", "barolo", "grignolino")  # text classes, sorted
    assert np.array_equal(np.asarray(data.class_names)[data.y], frame["label"].to_numpy())
    assert np.allclose(np.asarray(data.x), frame.drop(columns="label").to_numpy(np.float32))
    cached = list((tmp_path / "cache" / "parquet").glob("*.npy"))
    assert len(cached) == 1  # decoded once; the second run and load_data reuse it
    splits = load_splits(DataConfig(dataset=f"parquet:{path}", stream="on"))
    assert np.allclose(np.asarray(splits.train.x).mean(0), 0, atol=1e-5)  # standardised by the training split


def test_a_rewritten_parquet_table_replaces_its_cache_entry(wine_parquet, tmp_path):
    path, frame = wine_parquet
    cache = tmp_path / "cache" / "parquet"
    cache.mkdir(parents=True)
    legacy = cache / "0123456789abcdef01234567.npy"  # an entry named the old way: never read again
    np.save(legacy, np.zeros((2, 2), np.float32))
    other = tmp_path / "other.parquet"
    frame.iloc[:40].to_parquet(other)
    vaekit.load_data(f"parquet:{other}")
    vaekit.load_data(f"parquet:{path}")
    assert len(list(cache.glob("*.npy"))) == 2 and not legacy.exists()  # one entry per table
    kept = frame.iloc[:100].copy()
    kept["f0"] = kept["f0"] + 1.0
    kept.to_parquet(path)  # the table rewritten: the next load decodes the new rows, the old entry goes
    data = vaekit.load_data(f"parquet:{path}")
    assert np.allclose(np.asarray(data.x), kept.drop(columns="label").to_numpy(np.float32))
    assert len(list(cache.glob("*.npy"))) == 2  # the other table's entry stays
    assert len(vaekit.load_data(f"parquet:{other}").x) == 40


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


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """The digits as 8x8 grayscale PNGs in one sub-folder per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder") / "digits"
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)
    for i, (image, label) in enumerate(zip(images, digits.target)):
        (root / f"class-{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"class-{label}" / f"{i:04d}.png")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_image_folder_trains_exactly_as_loaded(digit_folder, tmp_path, workers):
    """Images decoded a batch at a time (by a thread, or by 2 DataLoader worker processes) train to the loaded
    folder's metrics exactly: every image is its own read, so the order is the loaded one too."""
    both = _train_both(f"folder:{digit_folder}", tmp_path, "exact", workers=workers)
    assert both["on"] == both["off"]
    splits = load_splits(DataConfig(dataset=f"folder:{digit_folder}", stream="on"))
    assert splits.train.x.shape[1:] == (1, 8, 8) and splits.train.class_names == tuple(f"class-{k}" for k in range(10))
    loaded = load_splits(DataConfig(dataset=f"folder:{digit_folder}", stream="off"))
    assert np.array_equal(np.asarray(splits.test.x), loaded.test.x)
    assert np.array_equal(splits.train.y, loaded.train.y)


def test_an_image_folder_is_indexed_once_and_again_when_it_changes(digit_folder, tmp_path, monkeypatch):
    import shutil

    from PIL import Image

    root = tmp_path / "copy"
    shutil.copytree(digit_folder, root)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    first = load_splits(DataConfig(dataset=f"folder:{root}", stream="on"))
    assert len(opened) == 1797  # the index: every header read, every file checked
    opened.clear()
    again = load_splits(DataConfig(dataset=f"folder:{root}", stream="on"))
    assert opened == [] and len(again.train) == len(first.train)  # from the cached index: nothing opened
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "class-3" / "new.png")
    grown = vaekit.load_data(f"folder:{root}", DataConfig(dataset=f"folder:{root}", stream="on"))
    assert len(grown) == 1798 and len(opened) == 1798  # a new file: indexed again


def test_a_corrupt_image_among_valid_ones_is_a_one_line_error_that_leaves_nothing(digit_folder, tmp_path, capsys,
                                                                                monkeypatch):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(digit_folder, root)
    whole = (root / "class-7" / "0007.png").read_bytes()
    (root / "class-7" / "0007.png").write_bytes(whole[:len(whole) // 2])  # truncated: its header still reads
    cache = tmp_path / "cache"
    monkeypatch.setenv("VAEKIT_CACHE", str(cache))
    for stream in ("on", "off"):
        err = _one_line_exit_2(capsys, ["train", "--dataset", f"folder:{root}", "--stream", stream], tmp_path / "r1")
        assert "0007.png: not a readable image" in err
    assert not list(cache.rglob("*.json"))  # no index of a folder that failed
    # an image that stops decoding after the folder was indexed: found in the first epoch, same one line, and the
    # fresh run's folder is removed
    (root / "class-7" / "0007.png").write_bytes(whole)
    load_splits(DataConfig(dataset=f"folder:{root}", stream="on"))  # indexed, all valid
    from vaekit.data import formats

    real = formats.decode_image

    def broken(path, shape):
        if path.name.endswith("2.png"):  # a tenth of the images, so the first training batches meet one
            raise vaekit.DataError(f"{path}: not a readable image (broken after indexing)")
        return real(path, shape)

    monkeypatch.setattr(streaming, "decode_image", broken)
    assert main(["train", "--dataset", f"folder:{root}", "--stream", "on", "--workers", "2", "--epochs", "300",
                 "--run-dir", str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vaekit: error:")
    assert "2.png: not a readable image (broken after indexing)" in err
    assert not (tmp_path / "r2").exists()


def test_a_semi_supervised_model_streams_its_labelled_repeats_from_disk(digit_folder, tmp_path, monkeypatch):
    """M2 repeats its few labelled items in every epoch; on a streamed folder the repeats are row indexes into the
    folder, not a copy of the training split in memory, and it trains to the loaded folder's metrics."""
    from vaekit import training

    kept = []
    real = training.oversample_labelled
    monkeypatch.setattr(training, "oversample_labelled", lambda x, y: kept.append(real(x, y)) or kept[-1])
    both = _train_both(f"folder:{digit_folder}", tmp_path, "m2", model="m2", labels=50, workers=0)
    streamed_x, y = kept[0]
    assert isinstance(streamed_x, streaming.FileTensor) and len(streamed_x) == len(y) > 1455  # repeats, on disk
    assert both["on"] == both["off"]
