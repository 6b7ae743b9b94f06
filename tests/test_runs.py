"""The run folder: save/load round trips, resume, never overwriting, never unpickling."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import runs
from vaekit.errors import RunError


def test_run_folder_contents(digits_run):
    names = {p.name for p in digits_run.iterdir()}
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "summary.json",
            "samples.png", "reconstructions.png"} <= names
    cfg = vaekit.RunConfig.from_dict(json.loads((digits_run / "config.json").read_text()))
    assert cfg.model.input_shape == (1, 8, 8) and cfg.model.likelihood == "bernoulli" and cfg.train.epochs == 20
    with Image.open(digits_run / "samples.png") as im:
        assert im.size == (8 * 34 + 2, 8 * 34 + 2)  # 8x8 images scaled x4 plus 2-pixel frames
    with Image.open(digits_run / "reconstructions.png") as im:
        assert im.size == (8 * 34 + 2, 2 * 34 + 2)
    record = json.loads((digits_run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"epoch", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "seconds"} <= set(record)
    # the times in the summary name the machine they were measured on, and so does the report
    from vaekit.tensors import bf16_supported
    machine = json.loads((digits_run / "summary.json").read_text())["machine"]
    assert machine["cpu"] and machine["threads"] >= 1
    assert machine["cpu_native_bf16"] == bf16_supported(torch.device("cpu"))
    assert (machine["gpu"] is None) == (not torch.cuda.is_available()) and machine["gpus"] == torch.cuda.device_count()
    assert machine["cpu"] in (digits_run / "report.html").read_text()


def test_save_load_round_trip_gives_identical_outputs(digits_run, tmp_path):
    model, cfg, _ = runs.load_model(digits_run)
    runs.save_model(tmp_path / "copy.safetensors", model, cfg)
    again, _, _ = runs.load_model(tmp_path / "copy.safetensors")
    x = torch.rand(16, 1, 8, 8)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.loss(x, gen())["loss"], again.loss(x, gen())["loss"])
    assert torch.equal(model.encode(x)[0], again.encode(x)[0])


def test_background_writer_writes_in_order_and_raises_a_failed_write_on_wait(tmp_path):
    writer = runs.BackgroundWriter()
    writer.write(tmp_path / "a.bin", b"first")
    writer.write(tmp_path / "a.bin", b"second")
    writer.write(tmp_path / "no-such-folder" / "b.bin", b"lost")
    with pytest.raises(RunError, match="no-such-folder/b.bin: cannot write it"):
        writer.wait()
    writer.close()
    assert (tmp_path / "a.bin").read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file left behind


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(tmp_path):
    straight = vaekit.train(dataset="digits", epochs=4, run_dir=tmp_path / "a", progress=False, pictures=False)
    vaekit.train(dataset="digits", epochs=2, run_dir=tmp_path / "b", progress=False, pictures=False)
    resumed = vaekit.resume(tmp_path / "b", epochs=4, progress=False, pictures=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3, 4]
    for a, b in zip(straight.metrics, resumed.metrics):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert resumed.test["loss"] == pytest.approx(straight.test["loss"], rel=1e-6)


def test_weight_average_follows_its_formula_and_applied_swaps_the_weights_back():
    from vaekit.training import WeightAverage, applied_average
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([w], lr=1.0)
    with applied_average(optimizer):  # no average: nothing changes
        assert torch.equal(w, torch.zeros(3))
    WeightAverage(optimizer, 0.5)
    expected = None
    for t in range(4):
        w.grad = -torch.ones(3)
        optimizer.step()  # w = t + 1
        decay = min(0.5, (1 + t) / (10 + t))  # the warm start, then the decay
        expected = t + 1.0 if expected is None else decay * expected + (1 - decay) * (t + 1.0)
    assert torch.allclose(optimizer.state[w]["average"], torch.full((3,), expected))  # 3.4318...
    with applied_average(optimizer):
        assert torch.allclose(w, torch.full((3,), expected))
    assert torch.equal(w, torch.full((3,), 4.0)) and torch.allclose(optimizer.state[w]["average"],
                                                                    torch.full((3,), expected))


def test_weight_average_is_validated_saved_and_resumed(tmp_path):
    """--weight-average: the model file holds the average of the raw weights the checkpoint keeps (their average
    in the optimiser's state), validation reads the average, and a resume goes on as if never stopped."""
    from vaekit.data import load_splits
    from vaekit.tensors import as_tensor, autocast_dtype
    from vaekit.training import evaluate_terms
    settings = dict(dataset="digits", weight_average=0.9, lr_schedule="constant", device="cpu", progress=False,
                    pictures=False)
    straight = vaekit.train(epochs=4, run_dir=tmp_path / "a", **settings)
    vaekit.train(epochs=2, run_dir=tmp_path / "b", **settings)
    resumed = vaekit.resume(tmp_path / "b", epochs=4, progress=False, pictures=False)
    for a, b in zip(straight.metrics, resumed.metrics, strict=True):
        assert (a["train_loss"], a["val_loss"]) == pytest.approx((b["train_loss"], b["val_loss"]), rel=1e-6)
    assert straight.metrics[-1]["best"]  # the last epoch is the model file's
    tensors, _ = runs.read_safetensors(tmp_path / "a" / runs.CHECKPOINT_FILE)
    model, cfg, _ = runs.load_model(tmp_path / "a")
    raw = runs._model_weights(tensors)
    for index, (name, average) in enumerate(model.named_parameters()):
        assert torch.equal(average, tensors[f"optim.{index}.average"])
        assert not torch.equal(average, raw[name])
    x_val = as_tensor(load_splits(cfg.data).val, torch.device("cpu"))
    again = evaluate_terms(model, x_val, seed=cfg.train.seed, autocast=autocast_dtype(cfg, x_val.device))
    assert again["loss"] == pytest.approx(straight.metrics[-1]["val_loss"], rel=1e-6)
    # averaging leaves training as it was; fitted in memory with no validation split, the model is the average,
    # not the last raw weights
    from vaekit.config import build_config
    from vaekit.training import train

    def fit(average: float):
        return train(build_config(dataset="digits", val_fraction=0.0, epochs=2, weight_average=average,
                                  lr_schedule="constant", device="cpu"), files=False, progress=False)
    averaged, plain = fit(0.9), fit(0.0)
    assert "val_loss" not in averaged.metrics[-1]
    assert [m["train_loss"] for m in averaged.metrics] == [m["train_loss"] for m in plain.metrics]
    assert not any(torch.equal(a, b) for a, b in zip(averaged.model.parameters(), plain.model.parameters()))


def test_model_file_keeps_the_epoch_with_the_best_validation_loss(tmp_path):
    from vaekit.data import load_splits
    from vaekit.tensors import as_tensor, autocast_dtype
    from vaekit.training import evaluate_terms

    # a high constant learning rate makes the validation loss wobble, and early stopping ends the run 3 epochs
    # after its best one, so the minimum is never the last epoch whatever the precision (bf16 or fp32) makes of it
    result = vaekit.train(dataset="digits", epochs=200, lr=3e-2, lr_schedule="constant", patience=3,
                          run_dir=tmp_path / "r", device="cpu", progress=False)  # re-evaluated on the CPU below
    val = [m["val_loss"] for m in result.metrics]
    best_epoch = int(np.argmin(val)) + 1
    assert best_epoch == len(val) - 3 < 200
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["best_epoch"] == best_epoch
    model, cfg, _ = runs.load_model(tmp_path / "r")
    x_val = as_tensor(load_splits(cfg.data).val, torch.device("cpu"))
    # validation runs in the training precision (bf16 where the CPU has it)
    again = evaluate_terms(model, x_val, seed=cfg.train.seed, autocast=autocast_dtype(cfg, x_val.device))
    assert again["loss"] == pytest.approx(min(val), rel=1e-6)
    # the test figures of the run are those of the saved (best) weights
    assert result.test["loss"] == pytest.approx(vaekit.evaluate(tmp_path / "r", device="cpu")["loss"], rel=1e-6)


def test_training_on_the_validation_split_keeps_the_last_epoch(tmp_path):
    result = vaekit.train(dataset="digits", epochs=3, validation="train", run_dir=tmp_path / "r", device="cpu",
                          progress=False)
    assert [m["best"] for m in result.metrics] == [True] * 3 and "val_loss" not in result.metrics[-1]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["best_epoch"] == 3
    assert result.test["loss"] == pytest.approx(vaekit.evaluate(tmp_path / "r", device="cpu")["loss"], rel=1e-6)
    assert vaekit.api.read_config(tmp_path / "r").data.validation == "train"
    # the model file holds the last epoch's weights, those the checkpoint goes on from
    from safetensors.torch import load_file
    kept, last = load_file(tmp_path / "r" / runs.MODEL_FILE), load_file(tmp_path / "r" / runs.CHECKPOINT_FILE)
    weights = [k for k in kept if k.startswith("model.")]
    assert weights and all(torch.equal(kept[k], last[k]) for k in weights)
    report = (tmp_path / "r" / "report.html").read_text()
    assert "epoch of the saved model (the last: no validation split)" in report and "best validation" not in report


def test_patience_stops_after_epochs_without_a_better_validation_loss(tmp_path, capsys):
    from vaekit.cli import main
    assert main(["train", "--dataset", "digits", "--epochs", "28", "--lr", "3e-2", "--lr-schedule", "constant",
                 "--patience", "2", "--device", "cpu", "--run-dir", str(tmp_path / "r"), "--no-plots"]) == 0
    best = [m["best"] for m in runs.read_metrics(tmp_path / "r")]
    assert len(best) < 28 and best[-3:] == [True, False, False]
    assert "stopping after epoch" in capsys.readouterr().out
    # --patience 0 turns early stopping off, also a preset's (the VampPrior recipe's is 50): the same run goes on
    # to its last epoch
    assert vaekit.build_config(preset="hvae-vampprior", patience=0).train.patience == 0
    assert main(["train", "--dataset", "digits", "--epochs", "28", "--lr", "3e-2", "--lr-schedule", "constant",
                 "--patience", "0", "--device", "cpu", "--run-dir", str(tmp_path / "off"), "--no-plots"]) == 0
    assert len(runs.read_metrics(tmp_path / "off")) == 28
    assert "stopping after epoch" not in capsys.readouterr().out


@pytest.fixture
def one_thread():
    """torch on one thread for a test's duration: beside other busy processes, two threads' barriers stretched
    digits epochs from ~0.05 s to 2-3 s."""
    from vaekit.estimators import _threads
    with _threads(1):
        yield


def test_time_budget_is_a_cap_and_the_run_is_complete(tmp_path, capsys, one_thread):
    from vaekit.cli import main
    budget_s = 3.0
    assert main(["train", "--dataset", "digits", "--epochs", "100000", "--max-minutes", str(budget_s / 60),
                 "--run-dir", str(tmp_path / "r"), "--no-plots"]) == 0
    metrics = runs.read_metrics(tmp_path / "r")
    spent = sum(m["seconds"] for m in metrics)
    # an epoch starts only if one as long as the last still fits; digits epochs are ~0.05 s
    assert 1 < len(metrics) < 100000 and budget_s / 2 < spent <= budget_s + 2 * max(m["seconds"] for m in metrics)
    assert "budget is spent" in capsys.readouterr().out
    assert (tmp_path / "r" / "summary.json").is_file() and (tmp_path / "r" / "model.safetensors").is_file()
    # digits' recipe is a cosine schedule: it ends with the budget, not at epoch 100,000, where the lr would still
    # be at its peak. (The lr of each epoch's last step. On a busy machine epochs of 0.05-0.3 s move the expected
    # end, and the budget may stop an epoch or two before it.)
    lrs = [m["lr"] for m in metrics]
    assert lrs[-1] < 0.5 * max(lrs) and lrs.index(max(lrs)) < len(lrs) / 2
    # the run ended its decay with its budget; a resume gets a new budget and extends the run with one cosine over
    # all of it, planned at once from the record's epoch times: its first epoch's lr is along that cosine (about
    # halfway on an idle machine), neither back at the peak nor kept at the finished decay's ~0
    capsys.readouterr()
    resumed = vaekit.resume(tmp_path / "r", progress=False, pictures=False).metrics[len(metrics):]
    assert resumed and 0.1 * max(lrs) < resumed[0]["lr"] < 0.95 * max(lrs)
    assert resumed[-1]["lr"] < 0.5 * max(lrs)  # and it decays again to the new budget's end
    assert "had finished its learning-rate decay" in capsys.readouterr().err


def test_same_seed_gives_identical_metrics(tmp_path):
    a = vaekit.train(dataset="digits", epochs=2, seed=7, run_dir=tmp_path / "a", progress=False, pictures=False)
    b = vaekit.train(dataset="digits", epochs=2, seed=7, run_dir=tmp_path / "b", progress=False, pictures=False)
    assert [m["val_loss"] for m in a.metrics] == [m["val_loss"] for m in b.metrics]


def test_existing_run_is_not_overwritten(digits_run):
    before = (digits_run / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="already exists"):
        vaekit.train(dataset="digits", epochs=1, run_dir=digits_run, progress=False)
    assert (digits_run / "model.safetensors").read_bytes() == before


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this would create the marker file


def test_pickle_planted_as_model_is_refused_and_runs_no_code(tmp_path, digits_run):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((digits_run / "config.json").read_text())
    (run / "model.safetensors").write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(RunError, match="never unpickles"):
        runs.load_model(run)
    torch.save({"x": _Planted(str(marker))}, tmp_path / "model.pt")
    with pytest.raises(RunError, match="never unpickles"):
        runs.load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_safetensors_whose_header_length_starts_like_a_pickle_still_loads(tmp_path, digits_run):
    from safetensors.torch import save
    tensors, metadata = runs.read_safetensors(digits_run / "model.safetensors")
    for pad in range(256):  # find metadata padding that makes the header length's first byte 0x80
        data = save(tensors, metadata={**metadata, "pad": "x" * pad})
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    (tmp_path / "m.safetensors").write_bytes(data)
    model, _, _ = runs.load_model(tmp_path / "m.safetensors")
    assert model.cfg.latent_dim == 20


def test_model_file_whose_config_does_not_match_its_weights(tmp_path, digits_run):
    tensors, metadata = runs.read_safetensors(digits_run / "model.safetensors")
    cfg = json.loads(metadata["config"])
    cfg["model"]["latent_dim"] = 5
    from safetensors.torch import save_file
    save_file(tensors, tmp_path / "m.safetensors", metadata={**metadata, "config": json.dumps(cfg)})
    with pytest.raises(RunError, match="weights do not match its config"):
        runs.load_model(tmp_path / "m.safetensors")


def test_sample_and_reconstruct_shapes_and_range(digits_run):
    x = vaekit.sample(digits_run, 10, seed=1)
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x, vaekit.sample(digits_run, 10, seed=1))
    originals, recons = vaekit.reconstruct(digits_run, 5)
    assert originals.shape == recons.shape == (5, 1, 8, 8)
    # reconstructions resemble their originals more than other items
    d = ((originals[:, None] - recons[None]) ** 2).sum((2, 3, 4))
    assert (d.argmin(1) == np.arange(5)).sum() >= 4


def test_csv_run_trains_gaussian_and_keeps_its_standardizer(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 2))
    values = z @ rng.normal(size=(2, 6)) * 10 + 100 + rng.normal(scale=0.1, size=(300, 6))
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,d,e,f\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in values))
    result = vaekit.train(dataset=f"csv:{path}", hidden=(32,), latent_dim=2, run_dir=tmp_path / "run",
                          progress=False)
    assert result.config.model.likelihood == "gaussian"
    assert result.metrics[-1]["val_loss"] < result.metrics[0]["val_loss"]
    _, _, std = runs.load_model(tmp_path / "run")
    assert np.allclose(std.mean, values[:240].mean(0), rtol=0.05)
    assert not (tmp_path / "run" / "samples.png").exists()  # no image grids for tables


def test_every_captioned_picture_is_a_run_folder_file():
    from vaekit.reporting import CAPTIONS

    assert set(CAPTIONS) == set(runs.PICTURE_FILES)  # a new picture is added to the run folder's layout too
