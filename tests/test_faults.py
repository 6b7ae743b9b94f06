"""Crash safety: kill -9 at random moments, Ctrl-C, and a diverging loss never cost more than one epoch."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit import runs
from vaekit.cli import main
from vaekit.models.vae import VAE


def _default_sigint() -> None:
    # Ctrl-C as at a terminal: a test suite started in the background by a shell without job control inherits
    # SIGINT ignored, and so would the child, which then never sees the test's SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--quiet", "--no-plots", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _checkpoint_epoch(run: Path) -> int:
    if not (run / runs.CHECKPOINT_FILE).exists():
        return 0
    _, metadata = runs.read_safetensors(run / runs.CHECKPOINT_FILE)
    return int(metadata["epoch"])


def test_twenty_kill9s_leave_a_loadable_run_and_resume_loses_at_most_one_epoch(tmp_path):
    rng = random.Random(0)
    run = tmp_path / "run"
    proc = _launch("--dataset", "digits", "--epochs", "100000", "--run-dir", str(run))
    lost = []
    for _ in range(20):
        _wait_for(run / runs.CONFIG_FILE, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = [m["epoch"] for m in runs.read_metrics(run)]  # epochs finished before the kill
        assert done == list(range(1, len(done) + 1))  # a contiguous history: resume continued where it was
        saved = _checkpoint_epoch(run)
        lost.append(len(done) - saved)
        assert len(done) - saved <= 1
        if (run / runs.MODEL_FILE).exists():
            model, cfg, _ = runs.load_model(run)
            assert torch.isfinite(model.loss(torch.rand(4, 1, 8, 8))["loss"]).all()
        proc = _launch("--resume", str(run))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = _checkpoint_epoch(run) + 2
    finish = _launch("--resume", str(run), "--epochs", str(final))
    out, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert [m["epoch"] for m in runs.read_metrics(run)] == list(range(1, final + 1))
    assert not list(run.glob(".*.tmp"))
    print(f"kill -9 x{len(lost)}: epochs lost per kill {lost}")
    assert max(lost) <= 1


def test_ctrl_c_stops_cleanly_with_the_last_epoch_saved(tmp_path):
    run = tmp_path / "run"
    proc = _launch("--dataset", "digits", "--epochs", "100000", "--run-dir", str(run))
    _wait_for(run / runs.CHECKPOINT_FILE, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a child that ignored the signal must not train on after the test
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert _checkpoint_epoch(run) >= 1 and runs.load_model(run)
    assert not list(run.glob(".*.tmp"))


def _alter_training_terms(monkeypatch, steps: range, alter) -> None:
    """VAE.loss with ``alter`` applied to each term of the training steps numbered in ``steps`` (from 1; digits
    at batch 128 has 12 steps an epoch)."""
    calls = {"n": 0}
    original = VAE.loss

    def altered(self, x, generator=None, target=None):
        terms = original(self, x, generator, target)
        if self.training:
            calls["n"] += 1
            if calls["n"] in steps:
                terms = {k: alter(v) for k, v in terms.items()}
        return terms

    monkeypatch.setattr(VAE, "loss", altered)


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    _alter_training_terms(monkeypatch, range(12 + 6, 10_000), lambda v: v * float("nan"))  # from step 6 of epoch 2
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--batch-size", "128", "--run-dir", str(run),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(_errors(err)) == 1  # one line of error (after the few-steps warning)
    assert "diverged" in err and "epoch 2" in err and "checkpoint of epoch 1" in err and "--lr" in err
    assert _checkpoint_epoch(run) == 1
    model, _, _ = runs.load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [m["epoch"] for m in runs.read_metrics(run)] == [1]


def test_a_loss_spike_is_named_in_a_warning_and_training_goes_on(tmp_path, monkeypatch, capsys):
    # epoch 3's logged terms read 100x (v + 99 v.detach(): the values jump, the gradients stay the model's own), as
    # a spike that does not reach nan would: one warning naming the epoch and both losses; the run finishes
    _alter_training_terms(monkeypatch, range(2 * 12 + 1, 3 * 12 + 1), lambda v: v + 99 * v.detach())  # epoch 3
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--batch-size", "128", "--run-dir", str(run),
                 "--quiet", "--no-plots"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "loss jumped" in line]
    losses = [m["train_loss"] for m in runs.read_metrics(run)]
    assert len(warnings) == 1 and "epoch 3's training loss" in warnings[0] and f"to {losses[2]:.2f}" in warnings[0]
    assert losses[2] > 50 * losses[1] and losses[3] < losses[1]  # the spike, and the next epoch's loss back


def test_a_loss_spike_in_an_estimators_fit_is_a_runtime_warning(monkeypatch):
    # the same spike in epoch 3 of a fit in memory (1,797 digits, batch 128: 15 steps an epoch): one
    # RuntimeWarning in the estimators' parameter names, and the fit finishes
    from sklearn.datasets import load_digits
    _alter_training_terms(monkeypatch, range(2 * 15 + 1, 3 * 15 + 1), lambda v: v + 99 * v.detach())
    vae = vaekit.VAE(latent_dim=4, epochs=5, batch_size=128, random_state=0)
    with pytest.warns(RuntimeWarning, match="loss jumped") as caught:
        vae.fit(load_digits().data / 16.0)
    spikes = [str(w.message) for w in caught if "loss jumped" in str(w.message)]
    assert [w.filename for w in caught if "loss jumped" in str(w.message)] == [__file__]  # the user's fit line
    assert len(spikes) == 1 and "epoch 3's training loss" in spikes[0] and "precision='fp32'" in spikes[0]
    assert "last epoch's weights are kept" in spikes[0] and "--" not in spikes[0]
    assert vae.history_[3]["train_loss"] < vae.history_[1]["train_loss"]  # epoch 4 back down


def test_on_spike_rollback_trains_the_epoch_again_from_the_one_before_at_half_the_lr(tmp_path, monkeypatch, capsys):
    # epoch 3's first pass has 50x its gradients (and its logged loss): Adam's moments and the weights leave their
    # course. --on-spike rollback restores epoch 2's weights and optimiser state, halves the lr and trains epoch 3
    # again (its steps now unaltered); the spike's pass writes nothing, and a resumed run keeps the halved lr
    from vaekit import training
    _alter_training_terms(monkeypatch, range(2 * 12 + 1, 3 * 12 + 1), lambda v: 50 * v)
    passes = []  # (epoch, weights and Adam's first moments at the pass's start and end)
    original = training.train_epoch

    def recorded(objective, optimizer, *args, **kwargs):
        def state():
            moments = [optimizer.state[p].get("exp_avg") for g in optimizer.param_groups for p in g["params"]]
            return [t.detach().clone() for t in [*objective.model.parameters(), *moments] if t is not None]
        start = state()
        terms = original(objective, optimizer, *args, **kwargs)
        passes.append((args[2], start, state()))
        return terms

    monkeypatch.setattr(training, "train_epoch", recorded)
    run = tmp_path / "run"
    flags = ["--dataset", "digits", "--epochs", "5", "--batch-size", "128", "--lr", "1e-3", "--lr-schedule",
             "constant", "--on-spike", "rollback", "--run-dir", str(run), "--quiet", "--no-plots"]
    assert main(["train", *flags]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "loss jumped" in line]
    assert len(err) == 1 and "epoch 3's training loss" in err[0] and "rolled back to epoch 2's" in err[0]
    assert "rollback 1 of 3" in err[0]
    assert [epoch for epoch, _, _ in passes] == [1, 2, 3, 3, 4, 5]
    spiked, again = passes[2], passes[3]
    assert all(torch.equal(a, b) for a, b in zip(spiked[1], again[1]))  # the same start: epoch 2's end
    assert not all(torch.equal(a, b) for a, b in zip(spiked[1], spiked[2]))  # which the spike's pass had moved
    metrics = runs.read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5]  # one record an epoch: the spike's pass has none
    assert [m["lr"] for m in metrics] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])
    assert [m["lr_scale"] for m in metrics] == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert metrics[2]["train_loss"] < 2 * metrics[1]["train_loss"]  # epoch 3's kept record is the clean pass's
    assert _checkpoint_epoch(run) == 5
    assert float(runs.read_safetensors(run / runs.CHECKPOINT_FILE)[1]["lr_scale"]) == 0.5  # what a resume reads
    assert main(["train", "--resume", str(run), "--epochs", "6", "--quiet", "--no-plots"]) == 0
    assert runs.read_metrics(run)[-1]["lr"] == pytest.approx(5e-4)  # the halved lr goes on after a resume


def test_a_spike_after_the_last_rollback_is_kept_with_the_warning(tmp_path, monkeypatch, capsys):
    # with one rollback allowed, epoch 3 spikes on both passes: the first is undone, the second kept and named
    from vaekit import training
    monkeypatch.setattr(training, "MAX_ROLLBACKS", 1)
    _alter_training_terms(monkeypatch, range(2 * 12 + 1, 4 * 12 + 1), lambda v: v + 99 * v.detach())
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "4", "--batch-size", "128", "--on-spike", "rollback",
                 "--run-dir", str(run), "--quiet", "--no-plots"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "loss jumped" in line]
    assert len(err) == 2 and "rollback 1 of 1" in err[0]
    assert "epoch 3's training loss" in err[1] and "--on-spike rollback has rolled back 1 times, its most" in err[1]
    losses = [m["train_loss"] for m in runs.read_metrics(run)]
    assert len(losses) == 4 and losses[2] > 50 * losses[1]  # the kept spike
    assert [m["lr_scale"] for m in runs.read_metrics(run)] == [1.0, 1.0, 0.5, 0.5]


def test_a_checkpoint_that_cannot_be_written_stops_training_with_one_line(tmp_path, monkeypatch, capsys):
    """Checkpoints are written in the background while the next epoch trains. A failed write (here the rename,
    as on a full disk) stops training at the next epoch's end with one line naming the file; the last good
    checkpoint stays, and the run resumes from it."""
    import vaekit

    replace, calls = os.replace, {"n": 0}

    def failing(src, dst):
        if Path(dst).name == runs.CHECKPOINT_FILE:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(runs.os, "replace", failing)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "4", "--run-dir", str(run), "--quiet",
                 "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(_errors(err)) == 1  # one line of error (after the few-steps warning)
    assert f"{run / runs.CHECKPOINT_FILE}: cannot write it (No space left on device)" in err
    assert _checkpoint_epoch(run) == 1 and not list(run.glob(".*.tmp"))
    monkeypatch.undo()
    resumed = vaekit.resume(run, progress=False, pictures=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3, 4] and _checkpoint_epoch(run) == 4


def test_grad_clip_is_applied(tmp_path):
    from vaekit import api
    result = api.train(dataset="digits", epochs=2, grad_clip=0.5, run_dir=tmp_path / "r", progress=False,
                       pictures=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["grad_clip"] == 0.5
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]


def _errors(stderr: str) -> list[str]:
    """stderr's lines other than vaekit's warnings."""
    return [line for line in stderr.splitlines() if not line.startswith("vaekit: warning:")]


def test_resume_goes_on_from_a_checkpoint_inside_an_epoch_and_trains_as_if_never_stopped(tmp_path, monkeypatch,
                                                                                          capsys):
    from safetensors.torch import load_file

    # batch 16: about 75 steps an epoch, so the progress refreshes at steps 25, 50 and 75 can checkpoint;
    # --checkpoint-minutes 1e-9: at every one of them
    flags = ["--dataset", "digits", "--epochs", "3", "--batch-size", "16", "--checkpoint-minutes", "1e-9",
             "--quiet", "--no-plots", "--device", "cpu"]
    assert main(["train", *flags, "--run-dir", str(tmp_path / "whole")]) == 0
    save = runs.save_checkpoint

    def save_then_stop(*args, within=None, **kwargs):
        save(*args, **{**kwargs, "write": runs.atomic_write}, within=within)  # on disk before the stop
        if within is not None and args[4] == 1 and within[0] == 50:  # inside epoch 2, at its step 50
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "save_checkpoint", save_then_stop)
    run = tmp_path / "stopped"
    assert main(["train", *flags, "--run-dir", str(run)]) == 130
    assert "keeps the checkpoint of step 50 of epoch 2" in capsys.readouterr().err
    assert [m["epoch"] for m in runs.read_metrics(run)] == [1]
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet", "--no-plots"]) == 0
    whole, resumed = runs.read_metrics(tmp_path / "whole"), runs.read_metrics(run)
    assert [m["epoch"] for m in resumed] == [1, 2, 3]
    for a, b in zip(whole, resumed):  # epoch 2's training loss sums the steps before and after the stop
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    for name in (runs.MODEL_FILE, runs.CHECKPOINT_FILE):
        a, b = load_file(tmp_path / "whole" / name), load_file(run / name)
        weights = [k for k in a if not k.startswith(("optim.", "rng."))]
        assert weights and all(torch.equal(a[k], b[k]) for k in weights), name  # the same weights, bit for bit
    assert main(["train", *flags[:-2], "--checkpoint-minutes", "-1", "--run-dir", str(tmp_path / "bad")]) == 2
    assert "--checkpoint-minutes must be >= 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_on_spike_rollback_undoes_a_loss_gone_nan(tmp_path, monkeypatch, capsys):
    # one NaN step in epoch 3 (its gradient makes every weight NaN): without rollback this stops the run
    # (test_divergence_stops_...); with it, epoch 2's state comes back and epoch 3 trains again at half the lr
    _alter_training_terms(monkeypatch, range(2 * 12 + 3, 2 * 12 + 4), lambda v: v * float("nan"))
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--batch-size", "128", "--lr", "1e-3",
                 "--lr-schedule", "constant", "--on-spike", "rollback", "--run-dir", str(run), "--quiet",
                 "--no-plots"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "training loss became nan" in line]
    assert len(err) == 1 and "rolled back to epoch 2's" in err[0] and "rollback 1 of 3" in err[0], err
    metrics = runs.read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(m["train_loss"]) for m in metrics) and metrics[-1]["train_loss"] < metrics[1]["train_loss"]
    assert [m["lr_scale"] for m in metrics] == [1.0, 1.0, 0.5, 0.5, 0.5]


class _NanGradient(torch.autograd.Function):
    """The value as it is, a NaN gradient: weights gone non-finite behind a finite loss."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@pytest.mark.parametrize("case", ["nan loss in epoch 1", "nan weights behind a finite loss"])
def test_on_spike_rollback_also_mends_a_first_epoch_and_weights_gone_nan(tmp_path, monkeypatch, capsys, case):
    # a NaN loss in epoch 1 (no epoch before: back to the starting weights), or a finite loss whose last step's
    # NaN gradient left the weights NaN at epoch 3's end (seen only there): each undone once, at half the lr, and
    # the run ends as a whole with finite weights; without rollback each stops the run
    if case == "nan loss in epoch 1":
        steps, alter = range(3, 4), lambda v: v * float("nan")
        said, epoch, back = "training loss became nan", 1, "rolled back to the starting weights"
    else:
        steps, alter = range(3 * 12, 3 * 12 + 1), _NanGradient.apply
        said, epoch, back = "weights became non-finite (its training loss", 3, "rolled back to epoch 2's"
    _alter_training_terms(monkeypatch, steps, alter)
    run = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--epochs", "4", "--batch-size", "128", "--lr", "1e-3", "--lr-schedule",
            "constant", "--run-dir", str(run), "--quiet", "--no-plots"]
    assert main([*args, "--on-spike", "rollback"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if said in line]
    assert len(err) == 1 and f"epoch {epoch}'s" in err[0] and back in err[0] and "rollback 1 of 3" in err[0], err
    metrics = runs.read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4] and all(math.isfinite(m["train_loss"]) for m in metrics)
    assert [m["lr_scale"] for m in metrics] == [1.0] * (epoch - 1) + [0.5] * (5 - epoch)
    model, _, _ = runs.load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    monkeypatch.undo()  # the same fault again, counted from the new run's first step, without rollback: it stops
    _alter_training_terms(monkeypatch, steps, alter)
    assert main([*args, "--overwrite"]) == 2
    assert "diverged" in capsys.readouterr().err


def test_the_estimators_take_on_spike_and_grad_clip(monkeypatch):
    # the scikit-learn estimators reach the same rollback as the CLI (epoch 3 of 15 steps spiked 50x): the fitted
    # history has the halved lr from epoch 3 on; a bad on_spike is a one-line error naming it
    from sklearn.datasets import load_digits

    import vaekit
    x = load_digits().data / 16.0  # 1,797 rows: 15 steps an epoch at batch 128
    _alter_training_terms(monkeypatch, range(2 * 15 + 1, 3 * 15 + 1), lambda v: 50 * v)
    with pytest.warns(RuntimeWarning, match="rollback 1 of 3"):  # a fit in memory warns as scikit-learn's do
        vae = vaekit.VAE(epochs=5, batch_size=128, lr=1e-3, lr_schedule="constant", on_spike="rollback",
                         grad_clip=100.0, random_state=0).fit(x)
    assert vae.config_.train.on_spike == "rollback" and vae.config_.train.grad_clip == 100.0
    assert [m["lr"] for m in vae.history_] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])
    with pytest.raises(vaekit.VaekitError, match="on_spike|on-spike"):
        vaekit.OutlierDetector(on_spike="retry", epochs=1).fit(x)
