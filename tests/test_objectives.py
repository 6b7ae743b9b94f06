"""Objectives and likelihood estimates: exact on a linear-Gaussian model, bounds in the right order,
beta / warm-up / free bits / IWAE / conv / learned-variance training on real data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import vaekit
from vaekit.config import TrainConfig
from vaekit.objectives import importance_sampled_nll, iwae_bound, kl_weight


class LinearGaussian(nn.Module):
    """Probabilistic PCA: z ~ N(0, I), x | z ~ N(W z + b, s^2 I), with an imperfect diagonal q(z|x).

    W has orthogonal columns, so the exact posterior is diagonal; q shifts its mean and inflates its
    variance so the importance-sampling estimate has something to converge over.
    """

    def __init__(self, d: int = 6, latent: int = 2, s: float = 0.5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, latent, generator=g, dtype=torch.float64))
        self.W = (q * torch.tensor([2.0, 1.2], dtype=torch.float64)).float()  # (D, L)
        self.b = torch.randn(d, generator=g).float()
        self.s = s

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(len(self.b))
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def encode(self, x):
        M = self.W.T @ self.W + self.s ** 2 * torch.eye(self.W.shape[1])  # (L, L), diagonal here
        mean = (x - self.b) @ self.W @ torch.linalg.inv(M).T
        var = self.s ** 2 / torch.diagonal(M)
        return mean + 0.3, torch.log(2.0 * var).expand_as(mean)  # deliberately off

    def recon_nll(self, z, target):
        return -torch.distributions.Normal(z @ self.W.T + self.b, self.s).log_prob(target.float()).sum(-1)


@pytest.fixture(scope="module")
def ppca():
    model = LinearGaussian()
    x = torch.distributions.MultivariateNormal(model.b, model.W @ model.W.T + 0.25 * torch.eye(6)).sample(
        (200,))
    return model, x


def test_importance_sampling_converges_to_the_exact_ppca_likelihood(ppca):
    model, x = ppca
    exact = -model.exact_log_px(x).double()
    gen = torch.Generator().manual_seed(0)
    errors = {k: (importance_sampled_nll(model, x, k, gen) - exact).mean().item() for k in (1, 10, 20000)}
    assert abs(errors[20000]) < 0.1, errors
    assert errors[1] > errors[10] > errors[20000] - 0.02  # an upper bound on -log p(x) that tightens with k


def test_iwae_bound_does_not_decrease_with_k(ppca):
    model, x = ppca
    gen = torch.Generator().manual_seed(1)
    bounds = [torch.stack([iwae_bound(model, x, k, gen) for _ in range(20)]).mean().item() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2] <= (model.exact_log_px(x).mean().item() + 0.01), bounds


def test_nll_estimate_is_never_worse_than_the_elbo_on_a_trained_model(digits_run):
    result = vaekit.evaluate(digits_run, nll=True, k=500)
    assert {"nll", "nll_stderr", "bits_per_dim", "loss", "k"} <= set(result)
    assert result["nll"] <= result["loss"] + result["nll_stderr"]
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (64 * math.log(2)))
    assert 0 < result["nll_stderr"] < 1.0


def test_kl_weight_schedule():
    assert kl_weight(TrainConfig(beta=2.0, kl_warmup=4), 1.0) == 0.5
    assert kl_weight(TrainConfig(beta=2.0, kl_warmup=4), 9.0) == 2.0
    assert kl_weight(TrainConfig(beta=0.5), 0.0) == 0.5


def test_free_bits_objective(digits_run):
    model = vaekit.load(digits_run, device="cpu").model_
    x = torch.from_numpy(vaekit.load_data("digits:test").as_float()[:64])
    torch.manual_seed(0)
    objective, terms = model.objective(x, x, TrainConfig(free_bits=0.5), 1.0)
    kl_dims = terms["kl_per_dim"].mean(0)
    expected = terms["recon"].mean() + torch.clamp(kl_dims, min=0.5).sum()
    assert objective.item() == pytest.approx(expected.item(), rel=1e-5)
    assert (kl_dims < 0.5).any()  # some dims are unused, so the floor matters


@pytest.mark.parametrize("settings", [dict(beta=4.0), dict(iw_samples=5), dict(kl_warmup=3.0, free_bits=0.1),
                                      dict(likelihood="gaussian-learned", binarize="none"),
                                      dict(arch="conv", hidden=(64,))], ids=str)
def test_variants_train_on_digits(settings, tmp_path):
    epochs = 40 if "likelihood" in settings else 8  # Adam moves log sigma by about lr = 1e-3 a step
    result = vaekit.train(dataset="digits", epochs=epochs, run_dir=tmp_path / "r", progress=False, pictures=False,
                          **settings)
    m = result.metrics
    assert m[-1]["val_loss"] < m[0]["val_loss"] and math.isfinite(result.test["loss"])
    if "beta" in settings:
        plain = vaekit.train(dataset="digits", epochs=8, run_dir=tmp_path / "p", progress=False, pictures=False)
        assert result.test["kl"] < 0.7 * plain.test["kl"]  # beta > 1 buys a smaller KL
    if settings.get("likelihood") == "gaussian-learned":
        model = vaekit.load(tmp_path / "r").model_
        assert model.likelihood.log_sigma.item() < -0.3  # learned well below the initial sigma = 1


def test_conv_vae_on_an_rgb_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(60):
        img = np.zeros((16, 16, 3), np.uint8)
        img[:, :, i % 3] = rng.integers(100, 255)
        img[4:12, 4:12] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"{i}.png")
    result = vaekit.train(dataset=f"folder:{folder}", arch="conv", hidden=(32,), latent_dim=4, epochs=30,
                          run_dir=tmp_path / "r", progress=False)
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]
    with Image.open(tmp_path / "r" / "samples.png") as im:
        assert im.mode == "RGB"


def test_cosine_lr_schedule():
    from vaekit.objectives import lr_factor
    cfg = TrainConfig(lr_schedule="cosine", warmup_epochs=1.0, epochs=11)
    assert lr_factor(cfg, 0.5) == pytest.approx(0.5, abs=1e-2)
    assert lr_factor(cfg, 1.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 6.0) == pytest.approx(0.5)
    assert lr_factor(cfg, 11.0) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(TrainConfig(lr_schedule="constant"), 3.0) == 1.0
