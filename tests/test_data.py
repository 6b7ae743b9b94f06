"""The data layer against the real files in ../shared/data, and its errors on bad files."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from vaekit.config import DataConfig
from vaekit.data import download, load_data, load_splits, named, parse_spec
from vaekit.data.formats import read_amat, read_idx
from vaekit.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_parses_with_official_shapes_and_label_counts(shared_data):
    train = load_data("mnist:train", DataConfig(data_dir=str(shared_data / "mnist")))
    test = load_data("mnist:test", DataConfig(data_dir=str(shared_data)))  # a root holding mnist/ works too
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == np.uint8
    assert test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(train.y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test.y).tolist() == MNIST_TEST_COUNTS
    assert train.x.max() == 255 and train.x.min() == 0


def test_splits_hold_out_validation_from_train(shared_data):
    splits = load_splits(DataConfig(dataset="fashion-mnist", data_dir=str(shared_data)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    assert np.bincount(splits.test.y).tolist() == [1000] * 10
    assert splits.train.class_names[0] == "T-shirt/top"


def test_binarized_mnist_has_official_splits_of_zeros_and_ones(shared_data):
    splits = load_splits(DataConfig(dataset="binarized-mnist", data_dir=str(shared_data)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50000, 10000, 10000)
    assert set(np.unique(splits.test.x)) == {0, 255} and splits.test.y is None  # uint8 means the 0..255 scale
    assert set(np.unique(splits.test.as_float())) == {0.0, 1.0}


def test_validation_train_appends_the_validation_split_to_training(shared_data):
    held = load_splits(DataConfig(dataset="binarized-mnist", data_dir=str(shared_data)))
    joined = load_splits(DataConfig(dataset="binarized-mnist", data_dir=str(shared_data), validation="train"))
    assert (len(joined.train), len(joined.val), len(joined.test)) == (60000, 0, 10000)
    assert np.array_equal(joined.train.x[:50000], held.train.x) and np.array_equal(joined.train.x[50000:], held.val.x)
    assert np.array_equal(joined.test.x, held.test.x) and joined.val.item_shape == (1, 28, 28)
    # a held-out share (digits has no official validation split) joins the same way, labels with it
    held, joined = load_splits(DataConfig()), load_splits(DataConfig(validation="train"))
    assert len(joined.train) == len(held.train) + len(held.val) and len(joined.val) == 0
    assert np.array_equal(joined.train.y, np.concatenate([held.train.y, held.val.y]))


def test_digits_is_the_offline_default():
    splits = load_splits(DataConfig())
    assert splits.train.item_shape == (1, 8, 8)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert 0.0 <= splits.train.x.min() and splits.train.x.max() <= 1.0


def test_amat_plain_and_gz_parse_the_same(tmp_path, shared_data):
    plain = tmp_path / "binarized_mnist_valid.amat"
    plain.write_bytes(gzip.decompress((shared_data / "binarized-mnist/binarized_mnist_valid.amat.gz").read_bytes()))
    assert np.array_equal(read_amat(plain), read_amat(shared_data / "binarized-mnist/binarized_mnist_valid.amat.gz"))


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize("payload, message", [
    (b"", "empty file"),
    (gzip.compress(_idx_bytes(np.zeros((3, 4, 4), np.uint8)))[:20], "corrupt or truncated gzip"),
    (gzip.compress(b"\x00\x00\x09\x07" + b"\x00" * 40), "not an IDX file"),
    (gzip.compress(_idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5]), "header says (3, 4, 4)"),
], ids=["empty", "truncated-gzip", "not-idx", "short-payload"])  # ids of the messages: gzip's bytes hold the time, and
# pytest-xdist's workers must collect the same ids
def test_bad_idx_files_are_rejected_naming_the_file(tmp_path, payload, message):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(payload)
    with pytest.raises(DataError, match="bad-images-idx3-ubyte.gz") as err:
        read_idx(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_labels_and_images_of_different_lengths_are_rejected(tmp_path, shared_data, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, folder / name)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(59999, np.uint8))))
    # registered with these files' own checksums, so the count check (not the checksum) is what refuses them
    sums = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size) for p in folder.iterdir()}
    monkeypatch.setitem(named.NAMED, "mnist", named._idx_dataset("mnist", (), named.DIGIT_NAMES, sums))
    with pytest.raises(DataError, match="59999 labels for 60000 images"):
        load_data("mnist:train", DataConfig(data_dir=str(folder)))


# --- dataset identity: a file is the dataset asked for only if its SHA-256 says so ---------------------------

def _one_line(call) -> str:
    with pytest.raises(DataError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_fashion_mnist_asked_of_a_folder_of_mnist_files_is_refused(shared_data):
    message = _one_line(lambda: load_data("fashion-mnist:test", DataConfig(data_dir=str(shared_data / "mnist"))))
    assert message == (f"{shared_data}/mnist/t10k-images-idx3-ubyte.gz: this is MNIST's t10k-images-idx3-ubyte.gz, "
                       "not fashion-mnist's t10k-images-idx3-ubyte.gz (by SHA-256); point --data-dir at the "
                       "fashion-mnist files or at a folder holding fashion-mnist/")


def test_mnist_asked_of_a_folder_of_fashion_files_is_refused(shared_data):
    message = _one_line(lambda: load_splits(DataConfig(dataset="mnist", data_dir=str(shared_data / "fashion-mnist"))))
    assert message.startswith(f"{shared_data}/fashion-mnist/train-images-idx3-ubyte.gz: this is Fashion-MNIST's "
                              "train-images-idx3-ubyte.gz, not mnist's train-images-idx3-ubyte.gz (by SHA-256)")


def test_a_root_holding_both_datasets_gives_each_its_own_files(shared_data):
    mnist = load_data("mnist:test", DataConfig(data_dir=str(shared_data)))
    fashion = load_data("fashion-mnist:test", DataConfig(data_dir=str(shared_data)))
    assert not np.array_equal(mnist.x, fashion.x)
    assert fashion.class_names[9] == "Ankle boot" and int(fashion.x.sum()) != int(mnist.x.sum())
    assert float(fashion.x.mean()) == pytest.approx(73.15, abs=0.05)  # Fashion's test mean; MNIST's is 33.79
    assert float(mnist.x.mean()) == pytest.approx(33.79, abs=0.05)


def test_binarized_mnist_against_a_truncated_copy_is_refused(tmp_path, shared_data):
    folder = tmp_path / "binarized-mnist"
    shutil.copytree(shared_data / "binarized-mnist", folder)
    test = folder / "binarized_mnist_test.amat.gz"
    lines = gzip.decompress(test.read_bytes()).splitlines(keepends=True)
    test.write_bytes(gzip.compress(b"".join(lines[:100])))  # a valid file of 100 rows: parses, but is not the set
    message = _one_line(lambda: load_data("binarized-mnist:test", DataConfig(data_dir=str(tmp_path))))
    assert message.startswith(f"{test}: not binarized-mnist's binarized_mnist_test.amat: its SHA-256 ")
    assert message.endswith("it holds 156800 bytes uncompressed where the real file has 15680000 (truncated?)")
    test.write_bytes((shared_data / "binarized-mnist/binarized_mnist_test.amat.gz").read_bytes()[:100_000])
    assert _one_line(lambda: load_data("binarized-mnist:test", DataConfig(data_dir=str(tmp_path)))).startswith(
        f"{test}: corrupt or truncated gzip")


def test_a_changed_file_in_the_cache_is_refused_too(tmp_path, shared_data, monkeypatch):
    cached = download.cache_dir() / "mnist"
    shutil.copytree(shared_data / "mnist", cached)
    data = bytearray((cached / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[100] ^= 0xFF
    (cached / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    assert "t10k-labels-idx1-ubyte.gz: not mnist's t10k-labels-idx1-ubyte.gz" in _one_line(
        lambda: load_data("mnist:test", DataConfig()))


def test_verification_is_remembered_by_size_and_mtime(tmp_path, shared_data, monkeypatch):
    folder = tmp_path / "mnist"
    shutil.copytree(shared_data / "mnist", folder)
    hashed = []
    original = download.file_sha256
    monkeypatch.setattr(download, "file_sha256", lambda path, gunzip: hashed.append(path.name) or original(path, gunzip))
    load_data("mnist:test", DataConfig(data_dir=str(folder)))
    assert hashed == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    load_data("mnist:test", DataConfig(data_dir=str(folder)))
    assert len(hashed) == 2  # the second load hashes nothing
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))  # touched: checked again
    load_data("mnist:test", DataConfig(data_dir=str(folder)))
    assert hashed[2:] == ["t10k-labels-idx1-ubyte.gz"]


def test_a_data_dir_that_does_not_exist_says_so_and_where_it_looked(tmp_path):
    message = _one_line(lambda: load_data("mnist:test", DataConfig(data_dir=str(tmp_path / "nowhere"))))
    assert message == (f"{tmp_path}/nowhere: this folder does not exist (--data-dir); looked for mnist in: "
                       f"{tmp_path}/nowhere/mnist, {tmp_path}/nowhere, {download.cache_dir()}/mnist")


def test_amat_row_of_wrong_length_names_the_line(tmp_path):
    path = tmp_path / "x.amat"
    path.write_text(" ".join("0" * 784) + "\n" + " ".join("1" * 783) + "\n")
    with pytest.raises(DataError, match="line 2 has 783 values"):
        read_amat(path)


def test_csv_is_standardised_by_the_training_split(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 3.0, size=(200, 4))
    path = tmp_path / "table.csv"
    path.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in values))
    splits = load_splits(DataConfig(dataset=f"csv:{path}"))
    assert np.allclose(splits.train.x.mean(0), 0, atol=1e-5) and np.allclose(splits.train.x.std(0), 1, atol=1e-4)
    assert splits.standardizer is not None and np.allclose(splits.standardizer.mean, values.mean(0), atol=0.5)


def test_csv_labels_may_be_integers_or_class_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label,b\n1,3,2\n4,7,5\n6,3,7\n")
    data = load_data(f"csv:{path}")
    assert data.y.tolist() == [3, 7, 3] and data.class_names is None and data.x.tolist() == [[1, 2], [4, 5], [6, 7]]
    path.write_text("a,label,b\n1,normal,2\n4,attack,5\n6,normal,7\n8,1.5,9\n")
    data = load_data(f"csv:{path}")
    assert data.class_names == ("1.5", "attack", "normal") and data.y.tolist() == [2, 1, 2, 0]
    assert data.x.tolist() == [[1, 2], [4, 5], [6, 7], [8, 9]]


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,x\n", "row 2, column 'b' is not a number"),
    ("a,b\n1,\n", "row 2, column 'b' is empty"),
    ("a,b\n1,2,3\n", "row 2 has 3 cells"),
    ("", "empty CSV"),
])
def test_bad_csv_gets_one_line_error(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match="bad.csv") as err:
        load_data(f"csv:{path}")
    assert message in str(err.value)


def test_image_folder_resizes_and_labels_by_subfolder(tmp_path):
    for label, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i, size in enumerate([(16, 16), (20, 12)]):
            Image.new("RGB", size, colour).save(tmp_path / label / f"{i}.png")
    data = load_data(f"folder:{tmp_path}", DataConfig(image_size=(8, 8)))
    assert data.x.shape == (4, 3, 8, 8) and data.x.dtype == np.uint8
    assert data.class_names == ("cats", "dogs") and data.y.tolist() == [0, 0, 1, 1]
    assert data.x[0, 0].min() == 255 and data.x[2, 2].min() == 255


def test_npz_and_npy_inputs(tmp_path):
    x = np.random.default_rng(0).random((10, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10))
    np.save(tmp_path / "b.npy", x)
    assert load_data(f"npz:{tmp_path / 'a.npz'}").x.shape == (10, 1, 28, 28)
    assert load_data(str(tmp_path / "b.npy")).item_shape == (1, 28, 28)
    x[3, 2, 1] = np.nan
    np.save(tmp_path / "c.npy", x)
    with pytest.raises(DataError, match="c.npy: contains NaN"):
        load_data(f"npy:{tmp_path / 'c.npy'}")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled objects"):
        load_data(f"npy:{tmp_path / 'obj.npy'}")


def test_unknown_spec_lists_the_choices():
    with pytest.raises(DataError, match="unknown data spec 'nope'"):
        parse_spec("nope")


def test_a_file_too_small_to_leave_a_training_item_is_a_one_line_error(tmp_path, capsys):
    from vaekit.cli import main

    np.save(tmp_path / "three.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(DataError, match=r"too few items \(3\) to train on"):
        load_splits(DataConfig(dataset=f"npy:{tmp_path / 'three.npy'}", val_fraction=0.9))
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npy:{tmp_path / 'three.npy'}", "--val-fraction", "0.9",
                 "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0 and not run.exists()
