"""The CLI, run in-process: each command works end to end, and bad input exits 2 with one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import vaekit
from vaekit.cli import build_parser, main


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


def test_sampling_a_class_from_a_model_without_labels_is_one_line(tmp_path, digits_run, capsys):
    assert main(["sample", str(digits_run), "--class", "3", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "--class: this run's model was trained without labels" in err and err.count("\n") == 1
    assert not (tmp_path / "s.png").exists()


# --- data folders: saved absolute, --data-dir on every command that reads data, $VAEKIT_DATA first -----------

def test_a_relative_data_dir_run_works_from_another_folder_and_refuses_the_wrong_dataset(
        tmp_path, shared_data, monkeypatch, capsys):
    from dataclasses import replace
    from vaekit.data import named
    monkeypatch.setattr(named, "NAMED", {k: replace(v, mirrors=()) for k, v in named.NAMED.items()})  # offline
    home, elsewhere, run = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "run"
    shutil.copytree(shared_data / "mnist", home / "data" / "mnist")
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    assert main(["train", "--dataset", "mnist", "--data-dir", "data/mnist", "--epochs", "1", "--hidden", "32",
                 "--latent-dim", "2", "--run-dir", str(run), "--quiet", "--no-plots"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["data_dir"] == str(home / "data" / "mnist")
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10000
    # the case: Fashion-MNIST asked of a run whose folder holds MNIST files
    assert main(["anomalies", str(run), "--input", "fashion-mnist:test", "--out", "a.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vaekit: error: {home}/data/mnist/t10k-images-idx3-ubyte.gz: this is MNIST's "
                   "t10k-images-idx3-ubyte.gz, not fashion-mnist's t10k-images-idx3-ubyte.gz (by SHA-256); point "
                   "--data-dir at the fashion-mnist files or at a folder holding fashion-mnist/")
    assert not list(elsewhere.iterdir())
    assert main(["anomalies", str(run), "--input", "fashion-mnist:test", "--data-dir", str(shared_data),
                 "--out", "a.csv"]) == 0
    flagged = int(capsys.readouterr().out.split("scores, ")[1].split(" of ")[0])
    assert flagged > 2000  # MNIST's own test split flags about 1 %, 100 of 10000
    # $VAEKIT_DATA comes before the folder saved in the run: a damaged copy there is found, and refused
    damaged = tmp_path / "env" / "mnist"
    shutil.copytree(shared_data / "mnist", damaged)
    (damaged / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    assert main(["evaluate", str(run)]) == 2
    assert f"{damaged}/t10k-labels-idx1-ubyte.gz: not mnist's" in capsys.readouterr().err


def test_a_data_dir_that_does_not_exist_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "mnist", "--data-dir", "nowhere", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vaekit: error: {tmp_path}/nowhere: this folder does not exist (--data-dir); looked for "
                          f"mnist in: {tmp_path}/nowhere/mnist, {tmp_path}/nowhere, ")
    assert not (tmp_path / "runs").exists()


def test_too_few_optimiser_steps_warn_with_the_number_and_a_suggestion(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--run-dir", str(tmp_path / "r"), "--quiet",
                 "--no-plots"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning == ["vaekit: warning: 2 epochs of 12 steps make only 24 optimiser steps (1455 training items, "
                       "batch 128); a model needs about 500 or more to learn more than a blur: pass --epochs 250, "
                       "or leave --epochs unset (about 3000 steps)"]
    assert main(["train", "--dataset", "digits", "--epochs", "42", "--run-dir", str(tmp_path / "r2"), "--quiet",
                 "--no-plots"]) == 0  # 504 steps
    assert "warning" not in capsys.readouterr().err


def _interrupt_in_epoch(monkeypatch, epoch):
    from vaekit import training
    original = training.train_epoch

    def train_epoch(objective, optimizer, x, cfg, e, bar, *labels):
        if e == epoch:
            raise KeyboardInterrupt
        return original(objective, optimizer, x, cfg, e, bar, *labels)
    monkeypatch.setattr(training, "train_epoch", train_epoch)


def test_ctrl_c_says_what_was_kept_and_a_rerun_or_resume_goes_on(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--epochs", "4", "--run-dir", str(run), "--quiet", "--no-plots"]
    with monkeypatch.context() as m:
        _interrupt_in_epoch(m, 1)
        assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"vaekit: interrupted before the first epoch ended; {run} holds no checkpoint, only the run's config; run the "
        "same command again to start over")
    assert main(["train", "--resume", str(run), "--quiet", "--no-plots"]) == 0  # says why it starts from scratch
    assert (f"vaekit: note: {run} has no checkpoint (it was stopped before its first epoch ended), so training "
            "starts at epoch 1") in capsys.readouterr().err
    with monkeypatch.context() as m:
        _interrupt_in_epoch(m, 1)
        assert main(argv + ["--overwrite"]) == 130
    capsys.readouterr()
    assert main(argv) == 0  # the same command again: not "run folder already exists"
    assert f"vaekit: note: {run} holds a run stopped before its first epoch ended" in capsys.readouterr().err
    with monkeypatch.context() as m:
        _interrupt_in_epoch(m, 3)
        assert main(argv + ["--overwrite"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"vaekit: interrupted; {run} keeps the checkpoint of epoch 2 (and the model of its best epoch); continue "
        f"with: vaekit train --resume {run}")
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_train_prints_where_the_report_is(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--run-dir", str(tmp_path / "r"), "--quiet",
                 "--no-plots"]) == 0
    assert f"report: {tmp_path / 'r' / 'report.html'}" in capsys.readouterr().out.splitlines()
    assert (tmp_path / "r" / "report.html").is_file()


def test_a_folder_of_samples_gets_the_users_usual_permissions(tmp_path, digits_run):
    import os
    old = os.umask(0o022)
    os.umask(old)
    assert main(["sample", str(digits_run), "-n", "3", "--out", str(tmp_path / "aug") + "/"]) == 0
    assert (tmp_path / "aug").stat().st_mode & 0o777 == 0o777 & ~old
    assert sorted(p.name for p in (tmp_path / "aug").iterdir()) == ["0.png", "1.png", "2.png"]


def test_version_and_help_text_for_every_option_with_an_example_per_subcommand(capsys):
    import argparse
    import vaekit
    from vaekit.cli import build_parser
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vaekit {vaekit.__version__}"

    def parsers(p, name="vaekit"):
        yield name, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, sub_name)
    for name, p in parsers(build_parser()):
        if name == "vaekit":
            continue
        assert p.epilog and p.epilog.startswith("example:\n  vaekit "), name
        command = p.epilog.split("\n  ")[1].split()
        assert name in command[1:3], (name, command)
        build_parser().parse_args(command[1:])  # the example is a valid command line
        missing = [a.option_strings or a.dest for a in p._actions if not a.help]  # train's: from config.py
        assert not missing, (name, missing)
        # decode reads only codes, sample only the model (an AE's code prior is saved with it), export no data
        if name not in ("decode", "sample", "plot", "export"):
            assert any("--data-dir" in a.option_strings for a in p._actions), name


def test_settings_are_declared_once_in_the_config_and_the_flags_follow():
    """Each config field is one flag with its help and choices from config.py; a bad value is refused by the
    one check whether it comes from a flag, the Python API or a config.json; the likelihood and model
    registries are exactly the declared values."""
    import typing
    from dataclasses import fields

    from vaekit.config import DataConfig, Likelihood, ModelConfig, TrainConfig, build_config
    from vaekit.models import MODELS
    from vaekit.models.likelihoods import LIKELIHOODS

    assert set(typing.get_args(Likelihood)) == {"auto", *LIKELIHOODS}  # auto: chosen from the data
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    for section in (DataConfig, ModelConfig, TrainConfig):
        for f in fields(section):
            if f.metadata.get("flag", True):  # input_shape and n_classes come from the data
                assert flags[f.name].help == f.metadata["help"], f.name
    assert flags["lr_schedule"].choices == ["constant", "cosine"] and flags["model"].choices == sorted(MODELS)
    with pytest.raises(vaekit.VaekitError, match=r"unknown --lr-schedule 'linear'; choose from constant, cosine"):
        build_config(lr_schedule="linear")
    with pytest.raises(vaekit.VaekitError, match=r"unknown --likelihood 'poisson'"):
        vaekit.RunConfig.from_dict({**vaekit.RunConfig().to_dict(), "model": {**vaekit.RunConfig().to_dict()["model"],
                                                                              "likelihood": "poisson"}})


def test_a_boolean_setting_a_preset_turns_on_can_be_turned_off(tmp_path, monkeypatch, capsys):
    """Boolean settings are --x / --no-x: --no-compile undoes a preset's compile, and --resume refuses it like
    any other setting."""
    from vaekit import config

    monkeypatch.setitem(config.PRESETS, "compiled-test", {"train.compile": True, "model.hidden": (32,),
                                                          "model.latent_dim": 2})
    parser = build_parser()
    assert parser.parse_args(["train", "--no-compile"]).compile is False
    assert parser.parse_args(["train", "--compile"]).compile is True
    assert parser.parse_args(["train"]).compile is None  # not given: the preset's or the default
    run = tmp_path / "r"
    assert main(["train", "--preset", "compiled-test", "--no-compile", "--dataset", "digits", "--epochs", "1",
                 "--no-plots", "--quiet", "--run-dir", str(run)]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["compile"] is False and saved["model"]["hidden"] == [32]
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-compile"]) == 2
    assert "only --epochs may change (got --compile)" in capsys.readouterr().err
