"""--log tensorboard: per-epoch scalars, picture grids and the latent projector, read back with TensorBoard's reader."""
from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
from PIL import Image

import vaekit
from vaekit import runs
from vaekit.cli import main
from vaekit.objectives import Schedule
from vaekit.plots import image_grid

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

EPOCHS = 4
SERIES = {f"{term}/{split}": f"{split}_{term}" for term in ("loss", "recon", "kl") for split in ("train", "val")}


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.SCALARS: 0,
                                                                          event_accumulator.IMAGES: 0})
    return acc.Reload()


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tb") / "digits"
    vaekit.train(dataset="digits", epochs=EPOCHS, run_dir=run_dir, progress=False, pictures=False, log="tensorboard")
    return run_dir


def test_scalars_have_one_value_per_epoch_equal_to_metrics_jsonl(logged_run):
    acc = _read(logged_run / "tensorboard")
    metrics = runs.read_metrics(logged_run)
    assert len(metrics) == EPOCHS
    assert set(acc.Tags()["scalars"]) == {*SERIES, "lr", "seconds"}
    for tag, key in [*SERIES.items(), ("seconds", "seconds")]:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(range(1, EPOCHS + 1)), tag
        # TensorBoard keeps float32: the logged value is the record's, rounded to float32
        assert [e.value for e in events] == [float(np.float32(m[key])) for m in metrics], tag
    # the learning rate of each epoch's last step, from the run's schedule (mlp recipe: warm-up, cosine decay)
    cfg = vaekit.RunConfig.from_dict(json.loads((logged_run / "config.json").read_text()))
    steps = math.ceil(1437 / cfg.train.batch_size)  # digits: 1437 training items
    expected = [cfg.train.lr * Schedule(cfg.train).lr_factor(epoch - 1 + (steps - 1) / steps) for epoch in range(1, EPOCHS + 1)]
    np.testing.assert_allclose([e.value for e in acc.Scalars("lr")], expected, rtol=1e-6)
    assert len(set(expected)) == EPOCHS  # the schedule moved: a constant would not test the epochs apart


def test_sample_grid_is_the_runs_samples_and_reconstructions_exist(logged_run):
    acc = _read(logged_run / "tensorboard")
    assert set(acc.Tags()["images"]) == {"samples", "reconstructions"}
    (samples,), (recons,) = acc.Images("samples"), acc.Images("reconstructions")
    assert samples.step == recons.step == EPOCHS
    logged = np.asarray(Image.open(io.BytesIO(samples.encoded_image_string)).convert("L"), np.int16)
    expected = np.asarray(image_grid(vaekit.sample(logged_run, 64, seed=0), 8), np.int16)  # best weights, seed 0
    assert logged.shape == expected.shape == (samples.height, samples.width)
    assert np.abs(logged - expected).max() <= 1
    originals, _ = vaekit.reconstruct(logged_run, 8)
    top_row = np.asarray(Image.open(io.BytesIO(recons.encoded_image_string)).convert("L"), np.int16)
    expected_row = np.asarray(image_grid(originals, 8), np.int16)
    assert np.abs(top_row[:expected_row.shape[0]] - expected_row).max() <= 1


def test_projector_holds_the_test_latent_means_with_labels_and_thumbnails(logged_run):
    log_dir = logged_run / "tensorboard"
    config = (log_dir / "projector_config.pbtxt").read_text()
    folder = log_dir / f"{EPOCHS:05d}" / "latent"
    assert f'tensor_path: "{EPOCHS:05d}/latent/tensors.tsv"' in config and "sprite" in config
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    codes = vaekit.encode(logged_run)  # (180, 20): the digits test split's posterior means
    assert tensors.shape == codes.shape == (180, 20)
    np.testing.assert_allclose(tensors, codes, atol=1e-5)
    labels = (folder / "metadata.tsv").read_text().splitlines()
    assert labels == [str(y) for y in vaekit.input_data(logged_run).y]
    sprite = Image.open(folder / "sprite.png")
    assert sprite.size == (14 * 8, 14 * 8)  # 180 thumbnails of 8x8 in a 14 x 14 square


def test_resume_continues_the_curves_with_one_value_per_epoch(tmp_path):
    run_dir = tmp_path / "run"
    vaekit.train(dataset="digits", epochs=2, run_dir=run_dir, progress=False, pictures=False, log="tensorboard")
    vaekit.resume(run_dir, epochs=3, progress=False, pictures=False)
    acc = _read(run_dir / "tensorboard")
    metrics = runs.read_metrics(run_dir)
    events = acc.Scalars("loss/val")
    assert [e.step for e in events] == [1, 2, 3]
    assert [e.value for e in events] == [float(np.float32(m["val_loss"])) for m in metrics]


def test_a_table_gets_curves_and_its_embedding_but_no_pictures(tmp_path):
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.5f}" for v in row) + f",{'ab'[i % 2]}" for i, row in enumerate(rng.normal(size=(150, 4)))]
    (tmp_path / "t.csv").write_text("w,x,y,z,label\n" + "\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    vaekit.train(dataset=f"csv:{tmp_path / 't.csv'}", epochs=2, latent_dim=3, hidden=(8,), run_dir=run_dir,
                 progress=False, pictures=False, log="tensorboard")
    acc = _read(run_dir / "tensorboard")
    assert acc.Tags()["images"] == [] and len(acc.Scalars("loss/val")) == 2
    folder = run_dir / "tensorboard" / "00002" / "latent"
    test = vaekit.input_data(run_dir)
    np.testing.assert_allclose(np.loadtxt(folder / "tensors.tsv", delimiter="\t"), vaekit.encode(run_dir), atol=1e-5)
    assert (folder / "metadata.tsv").read_text().split() == [test.class_names[y] for y in test.y]
    assert not (folder / "sprite.png").exists()


def test_runs_without_log_write_no_tensorboard_folder(digits_run):
    assert not (digits_run / "tensorboard").exists()


def test_bad_log_settings_are_one_line_errors(tmp_path, monkeypatch, capsys):
    assert main(["train", "--log", "wandb", "--run-dir", str(tmp_path / "a")]) == 2
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
    with pytest.raises(vaekit.VaekitError, match="unknown --log 'mlflow'; choose from none, tensorboard"):
        vaekit.build_config(log="mlflow")
    with pytest.raises(vaekit.VaekitError, match="unknown --log"):
        vaekit.RunConfig.from_dict({"train": {"log": "mlflow"}})
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    assert main(["train", "--log", "tensorboard", "--epochs", "1", "--quiet", "--run-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'vaekit[tensorboard]'" in err
    assert not (tmp_path / "b").exists()  # refused before the run folder was made
