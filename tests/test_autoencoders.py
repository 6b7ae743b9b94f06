"""Autoencoders at work on real data: denoising, codes, augmentation, anomaly detection."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.data.transforms import corrupt


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "dae"
    vaekit.train(dataset="digits", model="ae", noise="gaussian:0.3", epochs=60, run_dir=run, progress=False)
    return run


def test_a_denoisers_test_figures_are_for_corrupted_inputs_like_its_validation(denoiser, digits_run, capsys):
    from vaekit import runs
    from vaekit.data import load_splits
    from vaekit.tensors import as_tensor
    from vaekit.training import evaluate_terms
    summary = json.loads((denoiser / "summary.json").read_text())
    corrupted = vaekit.evaluate(denoiser)
    assert corrupted["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    model, cfg, _ = runs.load_model(denoiser)
    clean = evaluate_terms(model, as_tensor(load_splits(cfg.data).test, torch.device("cpu")))
    assert clean["loss"] < corrupted["loss"] - 0.5  # clean inputs are easier: the figures were of those before
    # evaluate reports the clean inputs' terms beside them (the bound the NLL of the clean items tightens)
    assert {k: corrupted[f"clean_{k}"] for k in clean} == pytest.approx(clean, rel=1e-6)
    assert "clean_loss" not in vaekit.evaluate(digits_run)  # a run without noise has one set of terms
    assert main(["evaluate", str(denoiser)]) == 0
    printed = capsys.readouterr().out
    assert "(inputs corrupted as in training)" in printed and f"clean inputs: loss {clean['loss']:.3f}" in printed
    last_val = runs.read_metrics(denoiser)[-1]["val_loss"]
    assert corrupted["loss"] == pytest.approx(last_val, rel=0.25)  # same task as the validation curve


def test_denoised_output_is_closer_to_clean_than_the_noisy_input(denoiser, tmp_path, capsys):
    clean = vaekit.load_data("digits:test").as_float()
    noisy = corrupt(torch.from_numpy(clean), "gaussian:0.3", torch.Generator().manual_seed(1)).numpy()
    np.savez(tmp_path / "noisy.npz", x=noisy)
    assert main(["denoise", str(denoiser), "--input", f"npz:{tmp_path / 'noisy.npz'}",
                 "--out", str(tmp_path / "clean.npz")]) == 0
    denoised = np.load(tmp_path / "clean.npz")["x"]
    mse_noisy, mse_out = ((noisy - clean) ** 2).mean(), ((denoised - clean) ** 2).mean()
    assert mse_out < 0.5 * mse_noisy, (mse_out, mse_noisy)
    assert (denoiser / "denoising.png").is_file()
    assert main(["denoise", str(denoiser), "--input", f"npz:{tmp_path / 'noisy.npz'}",
                 "--out", str(tmp_path / "pngs") + "/"]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert len(files) == len(clean) and Image.open(files[0]).size == (8, 8)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float16", 2e-2)])
def test_codes_round_trip_through_encode_and_decode(digits_run, tmp_path, dtype, tol, capsys):
    assert main(["encode", str(digits_run), "--out", str(tmp_path / "codes.npy"), "--dtype", dtype]) == 0
    printed = capsys.readouterr().out
    size = {"float32": 80, "float16": 40}[dtype]
    assert f"{size} bytes per item against 256 bytes raw (float32)" in printed
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (180, 20) and codes.dtype == dtype
    assert main(["decode", str(digits_run), "--input", str(tmp_path / "codes.npy"),
                 "--out", str(tmp_path / "dec.npz")]) == 0
    decoded = np.load(tmp_path / "dec.npz")["x"]
    _, recons = vaekit.reconstruct(digits_run, 180)
    assert np.abs(decoded - recons).max() < tol


def test_augmentation_has_the_data_shape_and_range_and_is_reproducible(digits_run, tmp_path, capsys):
    assert main(["sample", str(digits_run), "-n", "30", "--seed", "5", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["sample", str(digits_run), "-n", "30", "--seed", "5", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz")["x"], np.load(tmp_path / "b.npz")["x"]
    assert a.shape == (30, 1, 8, 8) and a.min() >= 0 and a.max() <= 1 and np.array_equal(a, b)
    assert main(["sample", str(digits_run), "-n", "12", "--out", str(tmp_path / "aug") + "/"]) == 0
    files = sorted((tmp_path / "aug").glob("*.png"))
    assert len(files) == 12 and all(Image.open(f).size == (8, 8) for f in files)


def test_an_autoregressive_run_shows_and_writes_its_drawn_samples(tmp_path):
    """A run with the autoregressive likelihood writes samples_drawn.png (pixel-by-pixel draws, the model's exact
    samples) beside the mean-field samples.png, and its report shows both; ``vaekit sample --draw`` writes binary
    images, reproducibly."""
    run = tmp_path / "ar"
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--likelihood", "bernoulli-autoregressive",
                 "--autoregressive-window", "1", "--quiet", "--run-dir", str(run)]) == 0
    with Image.open(run / "samples_drawn.png") as im, Image.open(run / "samples.png") as means:
        assert im.size == means.size
        assert {0, 255} <= set(np.unique(np.asarray(im.convert("L"))))  # black and white pixels drawn
    report = (run / "report.html").read_text()
    assert "samples_drawn.png" in report and "samples.png" in report
    for name in ("a.npz", "b.npz"):
        assert main(["sample", str(run), "-n", "16", "--draw", "--out", str(tmp_path / name)]) == 0
    a, b = np.load(tmp_path / "a.npz")["x"], np.load(tmp_path / "b.npz")["x"]
    assert a.shape == (16, 1, 8, 8) and set(np.unique(a)) == {0.0, 1.0} and np.array_equal(a, b)
    assert 0.05 < a.mean() < 0.6  # digit strokes on a dark ground, not blank or noise
    assert main(["sample", str(run), "-n", "16", "--out", str(tmp_path / "mean.npz")]) == 0
    assert len(np.unique(np.load(tmp_path / "mean.npz")["x"])) > 2  # without --draw: probabilities


def test_a_bernoulli_run_draws_no_separate_grid(digits_run):
    """Its pixels are independent given z, so samples.png's probabilities are already its exact mean."""
    assert (digits_run / "samples.png").is_file() and not (digits_run / "samples_drawn.png").exists()


def test_plain_autoencoder_samples_from_a_gaussian_fitted_to_its_codes(denoiser):
    x = vaekit.sample(denoiser, 16, seed=0)
    assert x.shape == (16, 1, 8, 8) and 0 <= x.min() and x.max() <= 1 and x.std() > 0.05


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, shared_data):
    run = tmp_path_factory.mktemp("runs") / "mnist"
    vaekit.train("pytorch-example", dataset="mnist", data_dir=str(shared_data), epochs=1, run_dir=run,
                 progress=False, pictures=False)
    return run


def test_foreign_items_score_above_in_distribution_ones(mnist_run, shared_data):
    from vaekit.anomaly import score_items
    from vaekit.tensors import as_tensor
    from sklearn.metrics import roc_auc_score

    model = vaekit.load(mnist_run).model_
    own = vaekit.load_data("mnist:test", vaekit.DataConfig(data_dir=str(shared_data)))
    foreign = vaekit.load_data("fashion-mnist:test", vaekit.DataConfig(data_dir=str(shared_data)))
    for score in ("recon", "elbo"):
        s_own = score_items(model, as_tensor(own, torch.device("cpu")), score)
        s_foreign = score_items(model, as_tensor(foreign, torch.device("cpu")), score)
        auroc = roc_auc_score(np.r_[np.zeros(len(s_own)), np.ones(len(s_foreign))], np.r_[s_own, s_foreign])
        assert auroc > 0.95, (score, auroc)


def test_scores_are_deterministic_unless_sampling_is_asked_for(mnist_run):
    a, _ = vaekit.anomalies(mnist_run, score="elbo")
    b, _ = vaekit.anomalies(mnist_run, score="elbo")
    c, _ = vaekit.anomalies(mnist_run, score="elbo", samples=4, seed=1)
    assert np.array_equal(a.scores, b.scores) and not np.array_equal(a.scores, c.scores)


def test_one_class_training_and_the_anomalies_command(tmp_path, capsys):
    run = tmp_path / "run"
    vaekit.train(dataset="digits", normal_class=0, epochs=300, run_dir=run, progress=False, pictures=False)
    assert len(vaekit.load_splits(vaekit.api.read_config(run).data).train.y) < 200  # only zeros
    out = tmp_path / "scores.csv"
    assert main(["anomalies", str(run), "--out", str(out), "--contamination", "0.05"]) == 0
    printed = capsys.readouterr().out
    auroc = float(printed.split("AUROC ")[1].split(",")[0])
    assert auroc > 0.9, printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 180 and set(rows[0]) == {"index", "score", "anomaly", "label"}
    flagged_zeros = sum(int(r["anomaly"]) for r in rows if r["label"] == "0")
    flagged_others = sum(int(r["anomaly"]) for r in rows if r["label"] != "0")
    assert flagged_others > 10 * max(flagged_zeros, 1)
    assert (tmp_path / "anomalies.png").is_file()
    assert main(["anomalies", str(run), "--out", str(out)]) == 2  # no clobbering


def test_threshold_flags_the_contamination_share_of_training_scores(mnist_run):
    found, _ = vaekit.anomalies(mnist_run, data="mnist:train", contamination=0.05)
    # the run's own training split is 90 % of mnist:train, so the flagged share is close to 5 %
    assert 0.04 < found.flags.mean() < 0.06
