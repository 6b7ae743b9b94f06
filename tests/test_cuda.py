"""The CUDA path: training, precision, checkpoints that move between GPU and CPU, scores and likelihoods.

Marked ``cuda``; they run wherever a GPU is present and are skipped only where there is none (this project's CPU
machines and CI). Run on an H100 (2026-11-23) and an H200 (2026-12-04); see bench/README.md, "GPU".
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import vaekit
from vaekit import runs
from vaekit.anomaly import score_items
from vaekit.tensors import as_tensor, autocast_dtype
from vaekit.training import compiler_available

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")]


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cuda") / "run"
    result = vaekit.train(dataset="digits", epochs=15, device="cuda", run_dir=run, progress=False, pictures=False)
    return run, result


def test_training_runs_on_the_gpu_in_bf16_and_the_loss_falls(cuda_run):
    run, result = cuda_run
    assert next(result.model.parameters()).device.type == "cuda"
    assert json.loads((run / "summary.json").read_text())["device"].startswith("cuda")
    if torch.cuda.is_bf16_supported():
        assert autocast_dtype(result.config, torch.device("cuda")) == torch.bfloat16
    val = [m["val_loss"] for m in result.metrics]
    assert val[-1] < 0.95 * val[0]  # H100: 29.0 -> 25.4 nats in 15 epochs


def test_a_gpu_model_evaluates_the_same_on_the_cpu(cuda_run):
    run, _ = cuda_run
    on_gpu, on_cpu = vaekit.evaluate(run, device="cuda"), vaekit.evaluate(run, device="cpu")
    # fp32 on both. The KL is a function of the posterior means and variances alone: equal up to summation order.
    # The one-sample reconstruction term draws z from each device's own generator (CUDA's and the CPU's streams
    # differ), so it agrees only within sampling noise (H100: 25.59 vs 25.69 nats).
    assert on_gpu["kl"] == pytest.approx(on_cpu["kl"], rel=1e-4)
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=2e-2)


def test_a_gpu_checkpoint_resumes_on_the_cpu(cuda_run, tmp_path):
    import shutil
    run, _ = cuda_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["train"]["device"] = "cpu"
    (copy / "config.json").write_text(json.dumps(cfg))
    result = vaekit.resume(copy, epochs=17, progress=False)
    assert next(result.model.parameters()).device.type == "cpu"
    assert [m["epoch"] for m in runs.read_metrics(copy)] == list(range(1, 18))


def test_scores_of_cpu_items_on_a_gpu_model_match_the_cpu_model(cuda_run):
    run, _ = cuda_run
    items = as_tensor(vaekit.load_data("digits:test"), torch.device("cpu"))
    gpu_model = vaekit.load(run, device="cuda").model_
    cpu_model = vaekit.load(run, device="cpu").model_
    for score in ("mse", "recon", "elbo"):
        a, b = score_items(gpu_model, items, score), score_items(cpu_model, items, score)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_importance_sampled_nll_on_the_gpu(cuda_run):
    run, _ = cuda_run
    r = vaekit.evaluate(run, nll=True, k=200, device="cuda")
    # a bound: the IS estimate of -log p(x) lies below the one-sample ELBO's loss (up to its noise)
    assert r["nll"] < r["loss"] + 3 * r["nll_stderr"] and 0 < r["nll_stderr"] < 1.0


@pytest.mark.skipif(not compiler_available(torch.device("cuda")) if torch.cuda.is_available() else True,
                    reason="torch.compile on CUDA needs Triton")
def test_compiled_training_on_the_gpu(tmp_path):
    result = vaekit.train(dataset="digits", epochs=3, device="cuda", compile=True, run_dir=tmp_path / "r",
                          progress=False, pictures=False)
    val = [m["val_loss"] for m in result.metrics]
    assert len(val) == 3 and val[-1] < val[0]


@pytest.mark.skipif(not compiler_available(torch.device("cuda")) if torch.cuda.is_available() else True,
                    reason="torch.compile on CUDA needs Triton")
def test_a_step_replayed_as_cuda_graphs_trains_as_the_default_compiled_step(tmp_path):
    # --compile-mode reduce-overhead: the same seed, the same batches; the graphs change how kernels launch, not
    # what they compute, so the curves agree within the noise of a few bf16 epochs (5 %)
    curves = {}
    for mode in ("default", "reduce-overhead"):
        result = vaekit.train(dataset="digits", epochs=4, device="cuda", compile=True, compile_mode=mode,
                              run_dir=tmp_path / mode, progress=False, pictures=False)
        curves[mode] = [m["val_loss"] for m in result.metrics]
    assert curves["reduce-overhead"][-1] < curves["reduce-overhead"][0]
    assert np.allclose(curves["reduce-overhead"], curves["default"], rtol=0.05)


def test_the_vampprior_hvae_trains_samples_and_estimates_its_likelihood_on_the_gpu(tmp_path):
    run = tmp_path / "hvae"
    result = vaekit.train(dataset="digits", epochs=15, device="cuda", run_dir=run, progress=False, pictures=False,
                          hierarchy=(8,), latent_dim=4, prior="vamp", prior_components=50)
    val = [m["val_loss"] for m in result.metrics]
    assert val[-1] < 0.95 * val[0]
    assert vaekit.sample(run, 16, seed=0).shape == (16, 1, 8, 8)
    r = vaekit.evaluate(run, nll=True, k=200, device="cuda")
    assert r["nll"] < r["loss"] + 3 * r["nll_stderr"]
    cpu = vaekit.evaluate(run, nll=True, k=200, device="cpu")
    assert r["nll"] == pytest.approx(cpu["nll"], abs=0.5)  # different generators: within sampling noise


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="NCCL needs a GPU per rank: two GPUs (the machines lent so far have one)")
def test_two_ranks_on_two_gpus_train_over_nccl(tmp_path):
    """torchrun with one rank per GPU: the process group is NCCL's (distributed.start), the ranks train as one."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vaekit",
           "train", "--quiet", "--no-plots", "--dataset", "digits", "--epochs", "4", "--run-dir", str(tmp_path / "r")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["device"].startswith("cuda")
    metrics = runs.read_metrics(tmp_path / "r")
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


def test_an_old_colour_window_model_loads_its_mask_on_the_gpu():
    """A C > 1 window model's state from before the per-plane mask (no window_by_plane) loaded into a model on the
    GPU: the rebuilt mask stays on the GPU, and is the raster-row one."""
    from vaekit.config import ModelConfig
    from vaekit.models import build_model

    cfg = ModelConfig(input_shape=(2, 3, 4), hidden=(8,), latent_dim=2, likelihood="bernoulli-autoregressive",
                      autoregressive_window=1)
    model = build_model(cfg).cuda()
    old = {k: v for k, v in model.state_dict().items() if k != "likelihood.window_by_plane"}
    model.load_state_dict(old)
    mask = model.likelihood.linear_mask
    raster_row = torch.arange(24, device="cuda") // 4
    expected = torch.ones(24, 24, device="cuda").tril(-1).bool() & (raster_row[None, :] >= raster_row[:, None] - 1)
    assert mask.device.type == "cuda" and torch.equal(mask.bool(), expected)
