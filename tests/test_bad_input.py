"""The malformed-input corpus: every case exits 2 with one line naming the file and the problem, and
leaves no partial output behind. Fixtures are generated here, from real data where it matters."""
from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main
from vaekit.data import named

OUT = "out"  # every case writes (or would write) only under tmp_path / OUT


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _mnist_folder(tmp: Path, shared: Path, **replace: bytes) -> Path:
    folder = tmp / "mnist"
    folder.mkdir()
    for f in (shared / "mnist").iterdir():
        if f.name in replace:
            (folder / f.name).write_bytes(replace[f.name])
        else:
            shutil.copy(f, folder / f.name)
    return folder


def _train(data: str, *extra: str, data_dir: Path | None = None) -> list[str]:
    args = ["train", "--dataset", data, "--run-dir", OUT + "/run", "--quiet", "--epochs", "1", *extra]
    return args + (["--data-dir", str(data_dir)] if data_dir else [])


def _npy(tmp: Path, name: str, array) -> Path:
    np.save(tmp / name, array, allow_pickle=True)
    return tmp / name


def _csv(tmp: Path, text: str) -> str:
    (tmp / "t.csv").write_text(text)
    return f"csv:{tmp / 't.csv'}"


def _images(tmp: Path, sizes, corrupt: bool = False) -> Path:
    folder = tmp / "imgs"
    folder.mkdir()
    for i, size in enumerate(sizes):
        Image.new("L", size, 128).save(folder / f"{i}.png")
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return folder


def _amat(tmp: Path, lines: list[str]) -> Path:
    folder = tmp / "bm"
    folder.mkdir()
    good = " ".join(["0"] * 784)
    for split in ("train", "valid", "test"):
        body = lines if split == "train" else [good] * 3
        (folder / f"binarized_mnist_{split}.amat").write_text("\n".join(body) + "\n")
    return folder


class _Planted:
    def __reduce__(self):
        return (open, ("PLANTED", "w"))


def _fake_run(tmp: Path, model_bytes: bytes | None = None, config: str | None = None) -> Path:
    run = tmp / "fakerun"
    run.mkdir()
    if config is not None:
        (run / "config.json").write_text(config)
    if model_bytes is not None:
        (run / "model.safetensors").write_bytes(model_bytes)
    return run


def _mismatched_model(tmp: Path, digits_run: Path) -> Path:
    import json
    from safetensors.torch import save_file
    from vaekit import runs
    tensors, meta = runs.read_safetensors(digits_run / "model.safetensors")
    cfg = json.loads(meta["config"])
    cfg["model"]["hidden"] = [32]
    save_file(tensors, tmp / "m.safetensors", metadata={**meta, "config": json.dumps(cfg)})
    return tmp / "m.safetensors"


# (case id, builder(tmp, shared, digits_run) -> argv, expected text in the one-line message)
# A named dataset's files are checked by SHA-256 before they are parsed, so a damaged copy of one is refused
# by its checksum; the parsers' own messages for such files are tested in test_data.py.
CASES = [
    ("idx-truncated-gz", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"t10k-images-idx3-ubyte.gz": (s / "mnist/t10k-images-idx3-ubyte.gz").read_bytes()[:5000]})),
     "t10k-images-idx3-ubyte.gz: not mnist's t10k-images-idx3-ubyte.gz: its SHA-256 "),
    ("idx-empty-gz", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"train-labels-idx1-ubyte.gz": b""})), "it holds 0 bytes where the real file has 28881 (truncated?)"),
    ("idx-wrong-magic", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"train-images-idx3-ubyte.gz": gzip.compress(b"\x12\x34\x08\x03" + b"\x00" * 100)})),
     "train-images-idx3-ubyte.gz: not mnist's train-images-idx3-ubyte.gz"),
    ("idx-count-disagrees", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"t10k-labels-idx1-ubyte.gz": gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10001)
                                                             + b"\x00" * 10000)})),
     "t10k-labels-idx1-ubyte.gz: not mnist's t10k-labels-idx1-ubyte.gz"),
    ("idx-labels-images-differ", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"t10k-labels-idx1-ubyte.gz": gzip.compress(_idx(np.zeros(9000, np.uint8)))})),
     "is not the known f7ae60f92e00..."),
    ("idx-images-not-uint8", lambda t, s, r: _train("mnist", data_dir=_mnist_folder(
        t, s, **{"t10k-images-idx3-ubyte.gz": gzip.compress(_idx(np.zeros((10000, 28), np.uint8)))})),
     "is not the known 8d422c7b0a1c..."),
    ("amat-row-length", lambda t, s, r: _train("binarized-mnist", data_dir=_amat(
        t, [" ".join(["0"] * 784), " ".join(["1"] * 780)])), "binarized_mnist_train.amat: not binarized-mnist's binarized_mnist_train.amat"),
    ("amat-not-binary", lambda t, s, r: _train("binarized-mnist", data_dir=_amat(
        t, [" ".join(["0"] * 783 + ["2"])])), "where the real file has 78400000 (truncated?)"),
    ("csv-text-cell", lambda t, s, r: _train(_csv(t, 'a,b\n1,2\n3,abc\n')),
     "row 3, column 'b' is not a number"),
    ("csv-missing-cell", lambda t, s, r: _train(_csv(t, 'a,b\n1,2\n3,\n')), "row 3, column 'b' is empty"),
    ("csv-ragged-row", lambda t, s, r: _train(_csv(t, 'a,b\n1,2\n3\n')), "row 3 has 1 cells"),
    ("csv-header-only", lambda t, s, r: _train(_csv(t, 'a,b\n')), "has a header but no rows"),
    ("csv-no-header", lambda t, s, r: _train(_csv(t, '1,2\n3,4\n')), "needs a header row"),
    ("csv-infinite", lambda t, s, r: _train(_csv(t, 'a,b\n1,2\n3,inf\n')), "is not finite"),
    ("csv-empty", lambda t, s, r: _train(_csv(t, '')), "empty CSV"),
    ("npy-nan", lambda t, s, r: _train(f"npy:{_npy(t, 'a.npy', np.full((20, 4), np.nan, np.float32))}"),
     "a.npy: contains NaN or infinite values"),
    ("npz-inf", lambda t, s, r: _train(f"npz:{_npz(t, x=np.full((20, 4), np.inf))}"), "contains NaN or infinite"),
    ("npy-pickled-objects", lambda t, s, r: _train(f"npy:{_npy(t, 'o.npy', np.array([{'a': 1}] * 3))}"),
     "o.npy: holds pickled objects"),
    ("npz-ambiguous-keys", lambda t, s, r: _train(f"npz:{_npz(t, a=np.zeros((5, 3)), b=np.zeros((5, 3)))}"),
     "name the data array 'x'"),
    ("npy-1d", lambda t, s, r: _train(f"npy:{_npy(t, 'v.npy', np.zeros(10, np.float32))}"),
     "expected an array of items (N, ...)"),
    ("npy-strings", lambda t, s, r: _train(f"npy:{_npy(t, 's.npy', np.array([['a', 'b']] * 4))}"),
     "is not numeric"),
    ("npy-truncated", lambda t, s, r: _train(f"npy:{_truncated_npy(t)}"), "not a valid NumPy file"),
    ("npz-labels-length", lambda t, s, r: _train(f"npz:{_npz(t, x=np.zeros((5, 3)), y=np.zeros(4, int))}"),
     "5 items but 4 labels"),
    ("folder-no-images", lambda t, s, r: _train(f"folder:{_empty_dir(t)}"), "no PNG or JPEG images"),
    ("folder-corrupt-png", lambda t, s, r: _train(f"folder:{_images(t, [(8, 8)] * 3, corrupt=True)}"),
     "broken.png: not a readable image"),
    ("folder-mixed-sizes", lambda t, s, r: _train(f"folder:{_images(t, [(8, 8), (8, 8), (12, 10)])}"),
     "images differ in size"),
    ("folder-missing", lambda t, s, r: _train(f"folder:{t / 'nowhere'}"), "nowhere: no such folder"),
    ("outside-bernoulli-support", lambda t, s, r: _train(
        f"npy:{_npy(t, 'w.npy', np.linspace(-1, 2, 80, dtype=np.float32).reshape(20, 4))}", "--likelihood",
        "bernoulli"), "outside the Bernoulli likelihood's [0, 1]"),
    ("latent-dim-0", lambda t, s, r: _train("digits", "--latent-dim", "0"), "latent dim must be at least 1"),
    ("hidden-0", lambda t, s, r: _train("digits", "--hidden", "0"), "hidden sizes must be positive"),
    ("batch-larger-than-data", lambda t, s, r: _train("digits", "--batch-size", "5000"),
     "batch size 5000 is larger than the training split"),
    ("epochs-0", lambda t, s, r: _train("digits", "--epochs", "0"), "epochs must be at least 1"),
    ("val-fraction-1", lambda t, s, r: _train("digits", "--val-fraction", "1.0"), "val_fraction must be in [0, 1)"),
    ("validation-train-streamed", lambda t, s, r: _train(
        f"npy:{_npy(t, 'v.npy', np.random.default_rng(0).random((40, 6), dtype=np.float32))}", "--stream", "on",
        "--validation", "train"), "--validation train joins data held in memory"),
    ("unknown-spec", lambda t, s, r: _train("kmnist"), "unknown data spec 'kmnist'"),
    ("spec-without-path", lambda t, s, r: _train("csv:"), "give a path after 'csv:'"),
    ("download-unreachable", lambda t, s, r: _train("fashion-mnist"), "download failed from every mirror"),
    ("run-missing", lambda t, s, r: ["evaluate", str(t / "norun")], "norun: no such run folder"),
    ("run-without-model", lambda t, s, r: ["evaluate", str(_fake_run(t, config="{}"))],
     "not a run folder with a model"),
    ("run-bad-config-json", lambda t, s, r: ["train", "--resume", str(_fake_run(t, config="{oops"))],
     "config.json: not valid JSON"),
    ("model-config-mismatch", lambda t, s, r: ["evaluate", str(_mismatched_model(t, r))],
     "weights do not match its config"),
    ("pickle-as-safetensors", lambda t, s, r: ["evaluate", str(_fake_run(t, pickle.dumps(_Planted()), "{}"))],
     "never unpickles"),
    ("pt-file-as-model", lambda t, s, r: ["sample", str(_torch_pickle(t)), "--out", OUT + "/s.png"],
     "model.pt: is a pickle / torch.save file"),
    ("truncated-safetensors", lambda t, s, r: ["evaluate", str(_truncated_model(t, r))], "m.safetensors: not a"),
    ("sample-zero", lambda t, s, r: ["sample", str(r), "-n", "0", "--out", OUT + "/s.png"],
     "number of samples must be at least 1"),
    ("sample-bad-suffix", lambda t, s, r: ["sample", str(r), "--out", OUT + "/s.jpg"], "must end in .png or .npz"),
    ("grad-clip-negative", lambda t, s, r: _train("digits", "--grad-clip", "-1"), "--grad-clip must be > 0"),
    ("weight-decay-negative", lambda t, s, r: _train("digits", "--weight-decay", "-0.1"),
     "--weight-decay must be >= 0, got -0.1"),
    ("dropout-one", lambda t, s, r: _train("digits", "--dropout", "1"), "--dropout must be in [0, 1), got 1"),
    ("weight-average-one", lambda t, s, r: _train("digits", "--weight-average", "1"),
     "--weight-average must be in [0, 1), got 1"),
    ("autoregressive-real-valued", lambda t, s, r: _train(_csv(t, "a,b\n1,2\n3,4\n5,6\n7,8\n9,1\n"),
                                                          "--likelihood", "bernoulli-autoregressive"),
     "outside the Bernoulli likelihood's [0, 1]"),
    ("autoregressive-hidden-without-it", lambda t, s, r: _train("digits", "--autoregressive-hidden", "8"),
     "--autoregressive-hidden is the masked layer of --likelihood bernoulli-autoregressive; the bernoulli"),
    ("autoregressive-hidden-negative", lambda t, s, r: _train("digits", "--likelihood", "bernoulli-autoregressive",
                                                              "--autoregressive-hidden", "-1"),
     "--autoregressive-hidden must be >= 0, got -1"),
    ("autoregressive-window-without-it", lambda t, s, r: _train("digits", "--autoregressive-window", "2"),
     "--autoregressive-window is the masked layer's reach under --likelihood bernoulli-autoregressive; the bernoulli"),
    ("autoregressive-units-without-a-window", lambda t, s, r: _train("digits", "--likelihood",
                                                                      "bernoulli-autoregressive",
                                                                      "--autoregressive-units", "4"),
     "--autoregressive-units read the values within --autoregressive-window rows through a convolution; give a "
     "window of 1 or more"),
    ("autoregressive-units-negative", lambda t, s, r: _train("digits", "--likelihood", "bernoulli-autoregressive",
                                                             "--autoregressive-window", "1",
                                                             "--autoregressive-units", "-2"),
     "--autoregressive-units must be >= 0, got -2"),
    ("autoregressive-window-on-a-table", lambda t, s, r: _train(
        f"npy:{_npy(t, 'b.npy', np.eye(20, 6, dtype=np.float32))}", "--likelihood", "bernoulli-autoregressive",
        "--autoregressive-window", "1"),
     "--autoregressive-window counts image rows; the data are vectors of 6 values, not images"),
    ("optimizer-unknown", lambda t, s, r: _train("digits", "--optimizer", "sgd"),
     "--optimizer: invalid choice: 'sgd'"),
    ("patience-negative", lambda t, s, r: _train("digits", "--patience", "-1"), "--patience: must be >= 0, got -1"),
    ("max-minutes-0", lambda t, s, r: _train("digits", "--max-minutes", "0"), "--max-minutes must be > 0, got 0"),
    ("workers-negative", lambda t, s, r: _train("digits", "--workers", "-1"), "--workers must be >= 0, got -1"),
    ("max-minutes-negative", lambda t, s, r: _train("digits", "--max-minutes", "-1"), "--max-minutes must be > 0"),
    ("warmup-negative", lambda t, s, r: _train("digits", "--warmup-epochs", "-1"), "warmup_epochs >= 0"),
    ("nll-precision-unknown", lambda t, s, r: ["evaluate", str(r), "--nll", "--precision", "fp8"],
     "invalid choice: 'fp8'"),
    ("gaussian-sigma-0", lambda t, s, r: _train("digits", "--likelihood", "gaussian", "--gaussian-sigma", "0"),
     "--gaussian-sigma must be > 0"),
    ("device-unknown", lambda t, s, r: _train("digits", "--device", "tpu7"), "unknown device 'tpu7'"),
    ("labels-fewer-than-classes", lambda t, s, r: _train("digits", "--labels", "5"),
     "--labels 5 must be between the number of classes (10)"),
    ("labels-without-labels", lambda t, s, r: _train(_csv(t, "a,b\n1,2\n3,4\n5,6\n7,8\n9,1\n"), "--labels", "2"),
     "has no labels, so --labels cannot keep any"),
    ("m2-without-labels", lambda t, s, r: _train(_csv(t, "a,b\n1,2\n3,4\n5,6\n7,8\n9,1\n"), "--model", "m2"),
     "learns a classifier from labels of at least 2 classes"),
    ("m2-alpha-negative", lambda t, s, r: _train("digits", "--model", "m2", "--labels", "20", "--alpha", "-1"),
     "--alpha must be > 0"),
    ("image-size-0", lambda t, s, r: _train(f"folder:{_images(t, [(8, 8)] * 3)}", "--image-size", "0"),
     "positive sizes"),
    ("npy-empty-items", lambda t, s, r: _train(f"npy:{_npy(t, 'e.npy', np.zeros((5, 0), np.float32))}"),
     "expected an array of items"),
    ("dynamic-binarize-real-data", lambda t, s, r: _train(_csv(t, "a,b\n-1,2\n3,4\n5,-6\n"), "--binarize",
                                                          "dynamic"), "--binarize dynamic needs data in [0, 1]"),
    ("iwae-with-beta", lambda t, s, r: _train("digits", "--iw-samples", "5", "--beta", "2"),
     "does not combine with --beta"),
    ("iw-from-without-iw-samples", lambda t, s, r: _train("digits", "--iw-from", "0.5"),
     "--iw-from says when training turns to the IWAE bound: add --iw-samples K"),
    ("iw-from-out-of-range", lambda t, s, r: _train("digits", "--iw-samples", "5", "--iw-from", "1.5"),
     "--iw-from must be in [0, 1)"),
    ("resume-with-other-flags", lambda t, s, r: ["train", "--resume", str(r), "--lr", "0.1"],
     "only --epochs may change"),
    ("negative-samples", lambda t, s, r: ["anomalies", str(r), "--samples", "-1", "--out", OUT + "/a.csv"],
     "--samples: must be >= 0, got -1"),
    ("reconstruct-n-0", lambda t, s, r: ["reconstruct", str(r), "-n", "0", "--out", OUT + "/r.png"],
     "-n: must be >= 1, got 0"),
    ("folder-output-over-user-files", lambda t, s, r: ["sample", str(r), "-n", "3", "--overwrite", "--out",
                                                       str(_user_folder(t)) + "/"],
     "holds files other than numbered PNGs"),
    ("empty-codes", lambda t, s, r: ["decode", str(r), "--input", str(_npy(t, "c.npy", np.zeros((0, 20), np.float32))),
                                     "--out", OUT + "/d.npz"], "with N >= 1, got (0, 20)"),
    ("mixture-without-nll", lambda t, s, r: ["evaluate", str(r), str(r)],
     "several runs are scored as their uniform mixture, by -log p(x): pass --nll"),
    ("mixture-of-other-items", lambda t, s, r: ["evaluate", str(r), str(_table_run(t)), "--nll", "--k", "2"],
     "table-run: a mixture's runs must score the same items; this run's"),
    ("autoregressive-order-without-it", lambda t, s, r: _train("digits", "--autoregressive-order", "columns"),
     "--autoregressive-order columns orders the values of an image under --likelihood bernoulli-autoregressive; "
     "here the likelihood is bernoulli"),
    ("compile-mode-without-compile", lambda t, s, r: _train("digits", "--compile-mode", "reduce-overhead"),
     "--compile-mode reduce-overhead is a mode of --compile: add --compile"),
    ("input-shape-mismatch", lambda t, s, r: ["evaluate", str(r), "--data",
                                              f"npy:{_npy(t, 'big.npy', np.zeros((4, 28, 28), np.float32))}"],
     "the model expects (1, 8, 8)"),
]


def _table_run(tmp: Path) -> Path:
    """A VAE of a small table (one epoch): other items than a digits run's."""
    import vaekit
    rows = "\n".join(f"{i % 7},{i % 3},{i % 5}" for i in range(40))
    with contextlib.redirect_stderr(io.StringIO()):  # its warning of too few steps is not the case's line
        vaekit.train(dataset=_csv(tmp, "a,b,c\n" + rows + "\n"), epochs=1, hidden=(8,), latent_dim=2,
                     run_dir=tmp / "table-run", progress=False, pictures=False)
    return tmp / "table-run"


def _user_folder(tmp: Path) -> Path:
    folder = tmp / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    return folder


def _npz(tmp: Path, **arrays) -> Path:
    np.savez(tmp / "a.npz", **arrays)
    return tmp / "a.npz"


def _truncated_npy(tmp: Path) -> Path:
    np.save(tmp / "t.npy", np.zeros((100, 10), np.float32))
    (tmp / "t.npy").write_bytes((tmp / "t.npy").read_bytes()[:200])
    return tmp / "t.npy"


def _empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no images here")
    return tmp / "empty"


def _torch_pickle(tmp: Path) -> Path:
    import torch
    torch.save({"weights": _Planted()}, tmp / "model.pt")
    return tmp / "model.pt"


def _truncated_model(tmp: Path, digits_run: Path) -> Path:
    data = (digits_run / "model.safetensors").read_bytes()
    (tmp / "m.safetensors").write_bytes(data[: len(data) // 2])
    return tmp / "m.safetensors"


@pytest.mark.parametrize("case, build, expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_input(case, build, expected, tmp_path, shared_data, digits_run, monkeypatch, capsys):
    from dataclasses import replace
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEKIT_MIRROR", "http://127.0.0.1:9")  # nothing listens; never the internet
    monkeypatch.setattr(named, "NAMED", {k: replace(v, mirrors=()) for k, v in named.NAMED.items()})
    argv = build(tmp_path, shared_data, digits_run)
    (tmp_path / OUT).mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and expected in err, err
    assert "Traceback" not in err
    assert not any((tmp_path / OUT).iterdir()), "partial output left behind"
    assert not (tmp_path / "PLANTED").exists(), "a pickle ran code"
    if (tmp_path / "mine").exists():
        assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_corpus_size():
    assert len(CASES) >= 30


def test_compile_without_a_compiler_is_one_line_and_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    from vaekit import training
    from vaekit.cli import main
    monkeypatch.setattr(training, "compiler_available", lambda device: False)
    assert main(["train", "--dataset", "digits", "--compile", "--device", "cpu", "--run-dir", str(tmp_path / "r"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--compile needs a C++ compiler" in err
    assert not (tmp_path / "r").exists()
