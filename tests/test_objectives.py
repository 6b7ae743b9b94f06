"""Objectives and likelihood estimates: exact on a linear-Gaussian model, bounds in the right order,
beta / warm-up / free bits / IWAE / conv / learned-variance training on real data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import vaekit
from vaekit.config import TrainConfig, build_config
from vaekit.models import build_model
from vaekit.objectives import importance_sampled_nll, iwae_bound, kl_weight


def linear_gaussian_vae(sizes: tuple[int, ...], d: int = 6, s: float = 0.5, seed: int = 0):
    """A vaekit VAE whose networks are linear, so that log p(x) has a closed form: stacked linear-Gaussian layers
    z_L ~ N(0, I), z_l | z_{l+1} ~ N(A_l z_{l+1} + a_l, s_l^2 I), x | z_1..z_L ~ N(sum_l B_l z_l + b, s^2 I) (one
    layer: probabilistic PCA). ``sizes``: z_1 (next to x) .. z_L. q is the exact posterior conditioned only on the
    layer above, its mean shifted and its variance inflated, so importance sampling has something to converge
    over. Returns the model and the exact log p(x) as a function."""
    g = torch.Generator().manual_seed(seed)
    L = len(sizes)
    cfg = build_config(input_shape=(d,), latent_dim=sizes[-1], hierarchy=tuple(sizes[:-1]), hidden=(d,),
                       likelihood="gaussian", gaussian_sigma=s).model
    model = build_model(cfg).double()
    # the generative model as one linear map of standard noise: z_all = M eps + m, top layer first
    order = list(range(L - 1, -1, -1))  # layer indices, top first (the decoder's input order)
    offsets = np.cumsum([0] + [sizes[i] for i in order])
    n_z = offsets[-1]
    M, m = torch.zeros(n_z, n_z, dtype=torch.float64), torch.zeros(n_z, dtype=torch.float64)
    M[:sizes[-1], :sizes[-1]] = torch.eye(sizes[-1], dtype=torch.float64)
    for j in range(1, L):
        above, here = slice(offsets[j - 1], offsets[j]), slice(offsets[j], offsets[j + 1])
        dim, up = sizes[order[j]], sizes[order[j - 1]]
        A, a, s_l = torch.randn(dim, up, generator=g, dtype=torch.float64), torch.randn(dim, generator=g,
                                                                                         dtype=torch.float64), 0.7
        layer = nn.Linear(up, 2 * dim).double()
        with torch.no_grad():
            layer.weight.zero_(), layer.weight[:dim].copy_(A)
            layer.bias[:dim].copy_(a), layer.bias[dim:].fill_(2 * math.log(s_l))
        model.lower[order[j]].conditional_prior = layer
        M[here] = A @ M[above]
        M[here, here] += s_l * torch.eye(dim, dtype=torch.float64)
        m[here] = A @ m[above] + a
    B, b = torch.randn(d, n_z, generator=g, dtype=torch.float64) / math.sqrt(n_z), torch.randn(d, generator=g,
                                                                                              dtype=torch.float64)
    model.decoder = nn.Linear(n_z, d).double()
    with torch.no_grad():
        model.decoder.weight.copy_(B), model.decoder.bias.copy_(b)
    cov_z = M @ M.T
    cov_x = B @ cov_z @ B.T + s ** 2 * torch.eye(d, dtype=torch.float64)
    mean_x = B @ m + b
    # the exact posterior p(z_all | x) = N(m + K (x - mean_x), cov_z - K B cov_z), K = cov_z B^T cov_x^-1
    gain = cov_z @ B.T @ torch.linalg.inv(cov_x)  # (n_z, d)
    post_cov = cov_z - gain @ B @ cov_z
    top = slice(0, sizes[-1])
    model.encoder = nn.Linear(d, 2 * sizes[-1]).double()
    with torch.no_grad():
        model.encoder.weight.zero_(), model.encoder.weight[top].copy_(gain[top])
        model.encoder.bias[top].copy_(m[top] - gain[top] @ mean_x + 0.3)  # the mean deliberately off
        model.encoder.bias[sizes[-1]:].copy_(torch.log(1.5 * torch.diagonal(post_cov[top, top])))
    for j in range(1, L):
        above, here = slice(offsets[j - 1], offsets[j]), slice(offsets[j], offsets[j + 1])
        dim = sizes[order[j]]
        # p(z_here | x, z_above) from the joint posterior: linear in x and z_above
        reg = post_cov[here, above] @ torch.linalg.inv(post_cov[above, above])  # (dim, up)
        cond_var = torch.diagonal(post_cov[here, here] - reg @ post_cov[above, here])
        # q reads relu(features(x)); features = x + 100 keeps the ReLU the identity on these items
        layer = model.lower[order[j]]
        layer.features = nn.Linear(d, d).double()
        layer.posterior = nn.Linear(d + sizes[order[j - 1]], 2 * dim).double()
        with torch.no_grad():
            layer.features.weight.copy_(torch.eye(d)), layer.features.bias.fill_(100.0)
            w_x = gain[here] - reg @ gain[above]  # (dim, d)
            layer.posterior.weight.zero_()
            layer.posterior.weight[:dim, :d].copy_(w_x), layer.posterior.weight[:dim, d:].copy_(reg)
            const = m[here] - gain[here] @ mean_x - reg @ (m[above] - gain[above] @ mean_x)
            layer.posterior.bias[:dim].copy_(const - 100.0 * w_x.sum(1) + 0.1)
            layer.posterior.bias[dim:].copy_(torch.log(1.3 * cond_var))
    exact = torch.distributions.MultivariateNormal(mean_x, cov_x)
    return model.eval(), exact


@pytest.fixture(scope="module", params=[(2,), (3, 2), (4, 3, 2)], ids=["one-layer", "two-layer", "three-layer"])
def linear_gaussian(request):
    model, exact = linear_gaussian_vae(request.param)
    x = exact.sample((200,))
    return model, x, -exact.log_prob(x)


def test_importance_sampling_converges_to_the_exact_linear_gaussian_likelihood(linear_gaussian):
    """The IS estimate with the whole inference network as proposal converges on log p(x) of stacked
    linear-Gaussian layers (one layer: probabilistic PCA)."""
    model, x, exact = linear_gaussian
    gen = torch.Generator().manual_seed(0)
    errors = {k: (importance_sampled_nll(model, x, k, gen) - exact).mean().item() for k in (1, 10, 20000)}
    assert abs(errors[20000]) < 0.1, errors
    assert errors[1] > errors[10] > errors[20000] - 0.02  # an upper bound on -log p(x) that tightens with k


def test_iwae_bound_does_not_decrease_with_k(linear_gaussian):
    model, x, exact_nll = linear_gaussian
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bounds = [torch.stack([iwae_bound(model, x, k, gen) for _ in range(20)]).mean().item() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2] <= (-exact_nll.mean().item() + 0.01), bounds


def test_nll_estimate_is_never_worse_than_the_elbo_on_a_trained_model(digits_run):
    result = vaekit.evaluate(digits_run, nll=True, k=500)
    assert {"nll", "nll_stderr", "bits_per_dim", "loss", "k"} <= set(result)
    assert result["nll"] <= result["loss"] + result["nll_stderr"]
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (64 * math.log(2)))
    assert 0 < result["nll_stderr"] < 1.0


def test_several_runs_are_scored_as_their_uniform_mixture(digits_run, tmp_path, capsys):
    """A run mixed with itself is that run (log((p + p) / 2) = log p); two different runs mix to a lower NLL than
    their mean (log of a mean >= the mean of logs, item by item), each member's own result kept beside; the CLI
    prints each run and the mixture."""
    from vaekit.cli import main
    alone = vaekit.evaluate(digits_run, nll=True, k=200)
    itself = vaekit.evaluate([digits_run, digits_run], nll=True, k=200)
    assert itself["nll"] == pytest.approx(alone["nll"], abs=1e-6)
    assert itself["members"] == [alone, alone] and itself["n"] == alone["n"] == 180
    other = tmp_path / "seed1"
    vaekit.train(dataset="digits", epochs=8, seed=1, hidden=(64,), run_dir=other, progress=False, pictures=False)
    mixed = vaekit.evaluate([digits_run, str(other)], nll=True, k=200)
    members = [m["nll"] for m in mixed["members"]]
    assert members[0] == pytest.approx(alone["nll"], abs=1e-6) and abs(members[1] - members[0]) > 0.5
    # strictly below the members' mean (the two disagree on some items), and at most log 2 above the better one
    assert mixed["nll"] < sum(members) / 2 - 0.01 and mixed["nll"] <= min(members) + math.log(2)
    assert 0 < mixed["nll_stderr"] < 1.0 and mixed["bits_per_dim"] == pytest.approx(mixed["nll"] / (64 * math.log(2)))
    assert main(["evaluate", str(digits_run), str(other), "--nll", "--k", "200"]) == 0
    printed = capsys.readouterr().out
    assert f"the uniform mixture of the 2 runs: -log p(x) ~= {mixed['nll']:.3f}" in printed
    assert f"{other}: -log p(x) ~= {members[1]:.3f}" in printed


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
                                      dict(arch="conv", hidden=(64,)), dict(hierarchy=(8,)),
                                      dict(arch="conv", hidden=(64,), hierarchy=(8,), prior="vamp",
                                           prior_components=10, iw_samples=3)], ids=str)
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


def test_iw_from_trains_on_the_elbo_then_on_the_iwae_bound(tmp_path, monkeypatch):
    """--iw-from 0.5 with 6 epochs, the first 2 the lr's warm-up: the ELBO (with its KL warm-up) for those and half
    of the 4 after them, one sample a step, then the K-sample bound for the last 2; and the model learns (its
    logged one-sample ELBO may loosen under the bound)."""
    from vaekit.models.vae import VAE
    seen = []
    objective = VAE.objective

    def spy(self, x, target, cfg, weight, labels=None):
        seen.append(cfg.iw_samples)
        return objective(self, x, target, cfg, weight, labels)

    monkeypatch.setattr(VAE, "objective", spy)
    result = vaekit.train(dataset="digits", epochs=6, warmup_epochs=2, batch_size=128, iw_samples=3, iw_from=0.5,
                          kl_warmup=2, run_dir=tmp_path / "r", progress=False, pictures=False)
    steps = len(seen) // 6
    assert seen == [1] * (4 * steps) + [3] * (2 * steps)
    assert result.metrics[-1]["val_loss"] < result.metrics[0]["val_loss"] and math.isfinite(result.test["loss"])


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


def test_weight_decay_shrinks_the_weights_by_lr_times_the_decay_each_step_apart_from_the_gradient():
    from vaekit.training import make_optimizer
    net = nn.Linear(4, 2)
    before = [p.detach().clone() for p in net.parameters()]
    assert type(make_optimizer(build_config(lr=0.1), net)) is torch.optim.Adam  # no decay: plain Adam, as before
    optimizer = make_optimizer(build_config(lr=0.1, weight_decay=0.5), net)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # Adam's own step is 0 on a zero gradient: only the decay moves the weights
    optimizer.step()
    for p, start in zip(net.parameters(), before):
        torch.testing.assert_close(p.detach(), start * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("scope", ["all", "weights"])
def test_weight_decay_scope_weights_leaves_biases_and_the_vampprior_pseudo_inputs_undecayed(scope):
    from vaekit.training import make_optimizer
    cfg = build_config(input_shape=(1, 8, 8), likelihood="bernoulli-autoregressive", autoregressive_units=2,
                       autoregressive_window=1, hidden=(16,), latent_dim=3, hierarchy=(2,), prior="vamp", prior_components=5, lr=0.1,
                       weight_decay=0.5, weight_decay_scope=scope)
    model = build_model(cfg.model)
    names = dict(model.named_parameters())
    with torch.no_grad():  # nothing at 0, where a decay would not show (the autoregressive layers start there)
        for p in names.values():
            p.uniform_(0.5, 1.5)
    before = {name: p.detach().clone() for name, p in names.items()}
    optimizer = make_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves the weights
    optimizer.step()
    shrunk = {name for name, p in names.items() if not torch.equal(p.detach(), before[name])}
    for name in shrunk:
        torch.testing.assert_close(names[name].detach(), before[name] * (1 - 0.1 * 0.5))
    matrices = {name for name, p in names.items()
                if p.ndim >= 2 and not name.startswith("prior.") and not name.endswith("bias")}
    # the pseudo-inputs, 1-D biases and the autoregressive units' (C, M) biases are all there to be left alone
    assert {"prior.pseudo_inputs", "likelihood.unit_bias", "likelihood.weight"} <= set(names)
    assert names["likelihood.unit_bias"].ndim == 2 and any(p.ndim == 1 for p in names.values())
    # "all" (the default): every parameter; "weights": the networks' matrices alone
    assert shrunk == (set(names) if scope == "all" else matrices)


def test_cosine_lr_schedule():
    from vaekit.objectives import Schedule
    cfg = TrainConfig(lr_schedule="cosine", warmup_epochs=1.0, epochs=11)
    lr_factor = Schedule(cfg).lr_factor
    assert lr_factor(0.5) == pytest.approx(0.5, abs=1e-2)
    assert lr_factor(1.0) == pytest.approx(1.0)
    assert lr_factor(6.0) == pytest.approx(0.5)
    assert lr_factor(11.0) == pytest.approx(0.0, abs=1e-9)
    assert Schedule(TrainConfig(lr_schedule="constant")).lr_factor(3.0) == 1.0
    # under a time budget the cosine ends where the budget is expected to (here after epoch 5, not 11)
    assert Schedule(cfg, end=5.0).lr_factor(3.0) == pytest.approx(0.5)
    assert Schedule(cfg, end=5.0).lr_factor(5.0) == pytest.approx(0.0, abs=1e-9)
    # a budget of about one epoch: the warm-up takes its first half, the decay the second
    assert Schedule(cfg, end=1.0).lr_factor(0.5) == pytest.approx(1.0, abs=1e-2)
    assert Schedule(cfg, end=1.0).lr_factor(0.75) == pytest.approx(0.5)


def test_a_budget_that_moves_its_planned_end_keeps_the_lr_continuous():
    """The budget planned 21 epochs; after epoch 11 the epochs slow down and it expects to end with epoch 16. The
    decay is half done there and stays so (lr 0.5, not cos(pi * 10 / 15)'s 0.25), and the rest of it runs over the 5
    epochs left: 0 at epoch 16. --iw-from's switch reads the same fraction, so it too moves only forwards."""
    from vaekit.objectives import Schedule
    schedule = Schedule(TrainConfig(lr_schedule="cosine", warmup_epochs=1.0, epochs=100), end=21.0)
    assert schedule.lr_factor(11.0) == pytest.approx(0.5) and schedule.fraction(11.0) == pytest.approx(0.5)
    schedule.replan(11, 16.0)
    assert schedule.lr_factor(11.0) == pytest.approx(0.5) and schedule.fraction(11.0) == pytest.approx(0.5)
    assert schedule.fraction(13.5) == pytest.approx(0.75)
    assert schedule.lr_factor(16.0) == pytest.approx(0.0, abs=1e-9)
    lrs = [schedule.lr_factor(11 + i / 10) for i in range(51)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # falling, without a jump: no step larger than a tenth's share
    assert max(a - b for a, b in zip(lrs, lrs[1:])) < 0.05
    # a resumed run is given where its last epoch stood (metrics.jsonl's "schedule") and goes on from there
    resumed = Schedule(TrainConfig(lr_schedule="cosine", warmup_epochs=1.0, epochs=100), end=16.0, anchor=(11.0, 0.5))
    assert [resumed.fraction(e) for e in (11.0, 13.5, 16.0)] == pytest.approx([0.5, 0.75, 1.0])
    schedule.replan(12, 16.0)  # an unmoved end leaves the anchor where it was
    assert schedule.anchor == (11, pytest.approx(0.5))
    # a re-plan in the warm-up only moves the end
    early = Schedule(TrainConfig(lr_schedule="cosine", warmup_epochs=2.0, epochs=100), end=21.0)
    early.replan(1, 11.0)
    assert early.anchor is None and early.fraction(6.5) == pytest.approx(0.5)


def test_a_refined_proposal_tightens_the_estimate_and_leaves_the_model_alone(linear_gaussian):
    """q moved per item (its mean is deliberately off and its variance inflated in these models) needs far fewer
    draws for the same accuracy, converges on the same exact log p(x) (the estimate stays unbiased in p), and
    neither the model's weights nor their gradients change."""
    from vaekit.objectives import refine_proposal
    model, x, exact = linear_gaussian
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    shifts = refine_proposal(model, x, steps=300, generator=gen)
    assert [tuple(d_mu.shape) for d_mu, _ in shifts] == [(len(x), size) for size in model.layer_sizes]
    assert all(torch.equal(p, before[name]) and p.grad is None for name, p in model.named_parameters())
    moved = torch.stack([(d_mu != 0).any(1) | (d_logvar != 0).any(1) for d_mu, d_logvar in shifts]).any(0)  # (B,)
    assert 0 < int(moved.sum()) < len(x), int(moved.sum())  # kept where the check bound rose, not everywhere
    assert all(bool(d_logvar.abs().sum()) for _, d_logvar in shifts)  # the variances move too
    # at k = 3, averaged over 10 estimates; at k = 20,000 once
    error = {(k, moved): torch.stack([importance_sampled_nll(model, x, k, gen, shifts=shifts if moved else None)
                                      - exact for _ in range(10 if k == 3 else 1)]).mean().item()
             for k in (3, 20000) for moved in (False, True)}
    assert error[3, True] < 0.8 * error[3, False], error  # 0.56-0.74 of it in these three models
    assert abs(error[20000, True]) < 0.1 and error[3, True] > -0.05, error  # the same p(x); still a bound


def test_evaluate_with_a_refined_proposal_on_a_trained_model(digits_run, capsys):
    """On a trained digits VAE, q moved per item gives a tighter estimate at a small k than q as trained (the
    same model: with a large k the two agree), recorded in the result and printed; a mixture passes it on to
    its members; a negative step count is a one-line error."""
    from vaekit.cli import main
    plain = vaekit.evaluate(digits_run, nll=True, k=5)
    moved = vaekit.evaluate(digits_run, nll=True, k=5, proposal_steps=30)
    assert plain["proposal_steps"] == 0 and moved["proposal_steps"] == 30
    assert moved["nll"] < plain["nll"] - 0.05, (moved["nll"], plain["nll"])
    converged = [vaekit.evaluate(digits_run, nll=True, k=2000, proposal_steps=s)["nll"] for s in (0, 30)]
    assert abs(converged[0] - converged[1]) < 0.15 and moved["nll"] > converged[1] - 0.15, (converged, moved)
    mixed = vaekit.evaluate([digits_run, digits_run], nll=True, k=5, proposal_steps=30)
    assert mixed["proposal_steps"] == 30 and mixed["members"][0]["nll"] == pytest.approx(moved["nll"], abs=1e-6)
    assert main(["evaluate", str(digits_run), "--nll", "--k", "5", "--proposal-steps", "30"]) == 0
    assert "q refined per item in 30 steps" in capsys.readouterr().out
    for flags in (["--nll", "--proposal-steps", "-1"], ["--proposal-steps", "30"]):  # negative; without --nll
        assert main(["evaluate", str(digits_run), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--proposal-steps" in err[0], err
