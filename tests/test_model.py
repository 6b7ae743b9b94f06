"""The VAE's maths: shapes, the closed-form KL, and that training lowers the loss on real data."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import vaekit
from vaekit.config import ModelConfig
from vaekit.models import MODELS, build_model
from vaekit.models.likelihoods import Bernoulli, Gaussian
from vaekit.models.priors import gaussian_kl


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("hidden", [(400,), (64, 32)])
def test_shapes_and_named_terms(name, hidden, arch):
    model = build_model(ModelConfig(model=name, arch=arch, input_shape=(1, 8, 8), hidden=hidden, latent_dim=3,
                                    likelihood="bernoulli", n_classes=4))  # n_classes: for a model of labels
    x = torch.rand(5, 1, 8, 8)
    z = model.embed(x)
    assert z.shape == (5, 3)
    assert model.decode_mean(z).shape == model.reconstruct(x).shape == (5, 1, 8, 8)
    if model.variational:
        mu, logvar = model.encode(x)
        assert mu.shape == logvar.shape == (5, 3) and torch.equal(mu, z)
    terms = model.loss(x)
    assert {"loss", "recon", "kl"} <= set(terms) and all(terms[k].shape == (5,) for k in ("loss", "recon", "kl"))
    assert torch.allclose(terms["loss"], terms["recon"] + terms["kl"])


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 4, 6)  # (S, B, L)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    monte_carlo = (log_q - log_p).mean(0)  # (B,)
    assert torch.allclose(gaussian_kl(mu, logvar), monte_carlo, atol=0.02)


def test_bernoulli_recon_is_the_binary_cross_entropy():
    model = build_model(ModelConfig(input_shape=(4,), hidden=(8,), latent_dim=2, likelihood="bernoulli"))
    logits, x = torch.randn(3, 4), torch.rand(3, 4)
    p = torch.sigmoid(logits)
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    assert torch.allclose(-model.likelihood.log_prob(logits, x), bce, atol=1e-5)


def test_gaussian_recon_is_the_normal_log_density():
    model = build_model(ModelConfig(input_shape=(4,), hidden=(8,), latent_dim=2, likelihood="gaussian"))
    mean, x = torch.randn(3, 4), torch.randn(3, 4)
    expected = torch.distributions.Normal(mean, 1.0).log_prob(x).sum(-1)
    assert torch.allclose(model.likelihood.log_prob(mean, x), expected, atol=1e-5)



def _autoregressive(dim: int, hidden: int, seed: int = 0):
    """An autoregressive Bernoulli likelihood over ``dim`` values with random weights (the model starts them at 0)."""
    model = build_model(ModelConfig(input_shape=(dim,), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_hidden=hidden))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in model.likelihood.parameters():
            weight.copy_(2 * torch.randn(weight.shape, generator=g))
    return model.likelihood


def _context_by_hand(likelihood, x: torch.Tensor, i: int) -> torch.Tensor:
    """What x_0 .. x_{i-1} (B, D) add to value i's logit, written out: the linear weights and, with hidden units,
    those of the units that read only values before i (MADE's masks)."""
    out = (x[:, :i] * likelihood.weight.detach()[i, :i]).sum(-1)
    if likelihood.hidden:
        degrees = 1 + torch.arange(likelihood.hidden) * (x.shape[1] - 1) // likelihood.hidden
        for k, degree in enumerate(degrees.tolist()):
            if degree <= i:  # unit k reads x_0 .. x_{degree-1}, all before i
                u, c = likelihood.hidden_in.weight.detach()[k, :degree], likelihood.hidden_in.bias.detach()[k]
                out = out + likelihood.hidden_out.detach()[i, k] * torch.relu((x[:, :degree] * u).sum(-1) + c)
    return out


@pytest.mark.parametrize("hidden", [0, 5])
def test_the_autoregressive_likelihood_is_a_normalised_distribution_of_its_conditionals(hidden):
    """Summed over all 2^D binary x, p(x | z) is 1 for any logits and weights; log p(x | z) is the sum of the
    sequential conditionals log p(x_i | z, x_<i), each reading only the values before it."""
    dim = 6
    likelihood = _autoregressive(dim, hidden)
    logits = torch.randn(2, 3, dim, generator=torch.Generator().manual_seed(1))  # (K=2 samples, B=3 items, D)
    every_x = torch.tensor([[(n >> i) & 1 for i in range(dim)] for n in range(2 ** dim)], dtype=torch.float32)
    total = torch.stack([likelihood.log_prob(logits, x.expand(3, dim)) for x in every_x]).logsumexp(0)  # (2, 3)
    torch.testing.assert_close(total, torch.zeros(2, 3), atol=1e-5, rtol=0)
    x = every_x[torch.randint(2 ** dim, (3,), generator=torch.Generator().manual_seed(2))]  # (3, D)
    expected = torch.zeros(2, 3)
    for i in range(dim):  # the chain rule, one value at a time
        p_i = torch.sigmoid(logits[..., i] + _context_by_hand(likelihood, x, i))
        expected += torch.log(torch.where(x[:, i] == 1, p_i, 1 - p_i))
    torch.testing.assert_close(likelihood.log_prob(logits, x), expected, atol=1e-5, rtol=1e-5)


def test_a_windowed_autoregressive_likelihood_reads_only_the_rows_above_within_its_window():
    """A (1, 4, 3) image, window 1: value (row r, column c) reads its row left of c and row r - 1, nothing else;
    still a normalised distribution over all 2^12 binary images."""
    model = build_model(ModelConfig(input_shape=(1, 4, 3), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_window=1))
    likelihood = model.likelihood
    with torch.no_grad():
        likelihood.weight.copy_(torch.randn(12, 12, generator=torch.Generator().manual_seed(0)))
    reads = likelihood.linear() != 0  # (D, D): which values each one's logit reads
    for i in range(12):
        row, col = divmod(i, 3)
        expected = {3 * (row - 1) + c for c in range(3) if row >= 1} | {3 * row + c for c in range(col)}
        assert set(reads[i].nonzero().flatten().tolist()) == expected
    every_x = torch.tensor([[(n >> i) & 1 for i in range(12)] for n in range(2 ** 12)], dtype=torch.float32)
    logits = torch.randn(12, generator=torch.Generator().manual_seed(1)).expand(2 ** 12, 12)
    torch.testing.assert_close(likelihood.log_prob(logits, every_x).logsumexp(0), torch.tensor(0.0), atol=1e-4,
                               rtol=0)


def test_a_windowed_likelihood_of_colour_images_reads_the_same_rows_in_the_planes_before(tmp_path):
    """A (2, 3, 4) image, window 1: value (c, r, w) reads plane c's row r left of w and row r - 1, and in the planes
    before c the rows r - 1 .. r + 1 (the place itself and its neighbours), not the last rows of plane c - 1; still a
    normalised distribution (a (2, 2, 3) image over all 2^12 binary images). A model file from before the per-plane
    window (no ``window_by_plane``) loads with the raster-row mask its weights were fitted with."""
    channels, height, width = 2, 3, 4
    model = build_model(ModelConfig(input_shape=(channels, height, width), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_window=1))
    likelihood = model.likelihood
    with torch.no_grad():
        likelihood.weight.copy_(torch.randn(24, 24, generator=torch.Generator().manual_seed(0)))
    reads = likelihood.linear() != 0
    for i in range(24):
        c, r, w = i // (height * width), i // width % height, i % width
        expected = {width * (r - 1) + k + c * height * width for k in range(width) if r >= 1}
        expected |= {width * r + k + c * height * width for k in range(w)}
        expected |= {c2 * height * width + width * r2 + k for c2 in range(c) for r2 in range(max(r - 1, 0),
                     min(r + 2, height)) for k in range(width)}
        assert set(reads[i].nonzero().flatten().tolist()) == expected, i
    state = model.state_dict()
    assert int(state["likelihood.window_by_plane"]) == 1
    old = {k: v for k, v in state.items() if k != "likelihood.window_by_plane"}
    again = build_model(ModelConfig(input_shape=(channels, height, width), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_window=1))
    again.load_state_dict(old)
    raster_row = torch.arange(24) // width  # the old mask: rows counted across the planes
    by_hand = torch.ones(24, 24).tril(-1).bool() & (raster_row[None, :] >= raster_row[:, None] - 1)
    assert torch.equal(again.likelihood.linear_mask.bool(), by_hand)
    again.load_state_dict(state)  # a current file: the per-plane mask
    assert torch.equal(again.likelihood.linear_mask, likelihood.linear_mask)
    # a partial load that leaves the likelihood out changes nothing of it
    again.load_state_dict({k: v for k, v in old.items() if k.startswith("decoder.")}, strict=False)
    assert int(again.likelihood.window_by_plane) == 1
    assert torch.equal(again.likelihood.linear_mask, likelihood.linear_mask)
    # the same through a model file, as a run folder's is read
    from safetensors.torch import save_file

    from vaekit import runs
    cfg = vaekit.RunConfig(model=model.cfg)
    runs.save_model(tmp_path / "new.safetensors", model, cfg)
    tensors, metadata = runs.read_safetensors(tmp_path / "new.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "model.likelihood.window_by_plane"},
              tmp_path / "old.safetensors", metadata=metadata)
    loaded = runs.load_model(tmp_path / "old.safetensors")[0]
    assert torch.equal(loaded.likelihood.linear_mask.bool(), by_hand)
    loaded = runs.load_model(tmp_path / "new.safetensors")[0]
    assert torch.equal(loaded.likelihood.linear_mask, likelihood.linear_mask)
    one_plane = build_model(ModelConfig(input_shape=(1, 4, 3), hidden=(8,), latent_dim=2,
                                        likelihood="bernoulli-autoregressive", autoregressive_window=1))
    assert "likelihood.window_by_plane" not in one_plane.state_dict()  # one plane: the two masks are the same

    small = build_model(ModelConfig(input_shape=(2, 2, 3), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_window=1)).likelihood
    with torch.no_grad():
        small.weight.copy_(torch.randn(12, 12, generator=torch.Generator().manual_seed(2)))
    every_x = torch.tensor([[(n >> i) & 1 for i in range(12)] for n in range(2 ** 12)], dtype=torch.float32)
    logits = torch.randn(12, generator=torch.Generator().manual_seed(1)).expand(2 ** 12, 12)
    torch.testing.assert_close(small.log_prob(logits, every_x).logsumexp(0), torch.tensor(0.0), atol=1e-4, rtol=0)


def _normalised_over_every_image(likelihood):
    """Asserts p(x | z) sums to 1 over all 2^12 binary 12-value images; returns 4 codes' logits (4, 12)."""
    every_x = torch.tensor([[(n >> i) & 1 for i in range(12)] for n in range(2 ** 12)], dtype=torch.float32)
    logits = torch.randn(12, generator=torch.Generator().manual_seed(1)).expand(2 ** 12, 12)
    torch.testing.assert_close(likelihood.log_prob(logits, every_x).logsumexp(0), torch.tensor(0.0), atol=1e-4,
                               rtol=0)
    return torch.randn(4, 12, generator=torch.Generator().manual_seed(5))


def _with_units(shape: tuple[int, ...], window: int, units: int, order: str = "rows"):
    """A windowed autoregressive likelihood with ``units`` nonlinear units a value, every weight random."""
    likelihood = build_model(ModelConfig(input_shape=shape, hidden=(8,), latent_dim=2,
                                         likelihood="bernoulli-autoregressive", autoregressive_window=window,
                                         autoregressive_units=units, autoregressive_order=order)).likelihood
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for weight in likelihood.parameters():
            weight.copy_(torch.randn(weight.shape, generator=g))
    return likelihood


def test_the_units_read_the_decoder_logit_and_a_masked_convolution_of_the_values_near_and_before():
    """(2, 4, 5) images (2 planes), window 1: with the linear part off and every unit active, value (c, r, w)
    depends on exactly the values within 1 row and 2 columns of it in the planes before c, and in plane c only those
    above it or left of it in its row; the decoder's logit enters nonlinearly (the units' ReLU). A (2, 2, 3) image
    is still a normalised distribution over all 2^12 binary images, and the pictures' mean-field pass computes the
    same conditionals one value at a time. A new model's units start silent (the plain Bernoulli)."""
    channels, height, width, window = 2, 4, 5, 1
    likelihood = _with_units((channels, height, width), window, 3)
    with torch.no_grad():
        likelihood.weight.zero_()
        likelihood.unit_context.zero_()
        likelihood.unit_bias.fill_(50.0)  # every unit on, so each read shows in the logit
    dim = channels * height * width
    x, logit = torch.rand(1, dim, generator=torch.Generator().manual_seed(4)), torch.randn(1, dim)
    base = likelihood.logits(logit, x)[0]
    for i in range(dim):
        c, r, w = i // (height * width), i // width % height, i % width
        expected = set()
        for j in range(dim):
            c2, r2, w2 = j // (height * width), j // width % height, j % width
            near = abs(r2 - r) <= window and abs(w2 - w) <= window + 1
            if near and (c2 < c or (c2 == c and (r2 < r or (r2 == r and w2 < w)))):
                expected.add(j)
        moved = set()
        for j in range(dim):
            nudged = x.clone()
            nudged[0, j] += 1
            if abs(likelihood.logits(logit, nudged)[0, i] - base[i]) > 1e-5:
                moved.add(j)
        assert moved == expected, i
    with torch.no_grad():  # the decoder's logit passes through the ReLUs: not a constant shift once a unit is off
        likelihood.unit_bias.zero_()
    shifted = likelihood.logits(logit + 3.0, x) - likelihood.logits(logit, x)
    assert (shifted - 3.0).abs().max() > 1e-3

    likelihood = _with_units((2, 2, 3), 1, 3)
    logits = _normalised_over_every_image(likelihood)
    mean = likelihood.mean(logits)
    torch.testing.assert_close(mean, torch.sigmoid(likelihood.logits(logits, mean)))
    fresh = build_model(ModelConfig(input_shape=(1, 4, 3), hidden=(8,), latent_dim=2,
                                    likelihood="bernoulli-autoregressive", autoregressive_window=1,
                                    autoregressive_units=4)).likelihood
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(fresh.log_prob(logits, x), Bernoulli().log_prob(logits, x))  # it starts at b = 0


def test_in_column_order_each_value_reads_the_column_left_of_it_and_the_values_above_it():
    """--autoregressive-order columns, (1, 3, 4) images, window 1: with the units silent, value (r, c)'s logit moves
    with exactly the values above it in its own column and the whole column left of it (the transposed image's
    raster window); with the units on it is still a normalised distribution over all 2^12 binary images, and the
    pictures' mean-field pass computes the same conditionals one value at a time, in the image's own layout."""
    height, width = 3, 4
    likelihood = _with_units((1, height, width), 1, 2, order="columns")
    assert likelihood.image_shape == (1, width, height)

    def conditional_logits(logit, x):  # each value's logit, in the image's raster layout
        return likelihood._unordered(likelihood.logits(likelihood._ordered(logit), likelihood._ordered(x)))

    logits = _normalised_over_every_image(likelihood)
    mean = likelihood.mean(logits)
    torch.testing.assert_close(mean, torch.sigmoid(conditional_logits(logits, mean)))
    with torch.no_grad():
        likelihood.unit_out.zero_()
    x, logit = torch.rand(1, 12, generator=torch.Generator().manual_seed(4)), torch.randn(1, 12)
    base = conditional_logits(logit, x)[0]
    for i in range(12):
        r, c = divmod(i, width)
        expected = {j for j in range(12) if (j % width == c and j // width < r) or j % width == c - 1}
        moved = set()
        for j in range(12):
            nudged = x.clone()
            nudged[0, j] += 1
            if abs(conditional_logits(logit, nudged)[0, i] - base[i]) > 1e-5:
                moved.add(j)
        assert moved == expected, i


@pytest.mark.parametrize("hidden", [0, 5])
def test_the_autoregressive_likelihood_starts_as_the_bernoulli_and_draws_pictures_one_value_at_a_time(hidden):
    fresh = build_model(ModelConfig(input_shape=(5,), hidden=(8,), latent_dim=2, likelihood="bernoulli-autoregressive",
                                    autoregressive_hidden=hidden)).likelihood
    logits, x = torch.randn(4, 5), torch.rand(4, 5)
    torch.testing.assert_close(fresh.log_prob(logits, x), Bernoulli().log_prob(logits, x))
    torch.testing.assert_close(fresh.mean(logits), torch.sigmoid(logits))  # zero weights: independent values
    likelihood = _autoregressive(5, hidden)
    mean = likelihood.mean(logits)
    for i in range(5):  # each value's probability given the probabilities before it
        torch.testing.assert_close(mean[:, i], torch.sigmoid(logits[:, i] + _context_by_hand(likelihood, mean, i)))


@pytest.mark.parametrize("kind", ["linear", "hidden units", "nonlinear units", "nonlinear units, columns"])
def test_drawn_values_follow_the_autoregressive_likelihood_exactly(kind):
    """Ancestral draws (each value given the values drawn before it) have p(x | z) as their distribution: over
    the 2^6 binary images of one code, 60,000 draws' frequencies match exp(log_prob) within 4.5 binomial standard
    errors each (a wrong order, or drawing from the mean-field probabilities, is off by far more)."""
    if kind.startswith("nonlinear units"):
        likelihood = _with_units((1, 2, 3), 1, 3, order="columns" if kind.endswith("columns") else "rows")
    else:
        likelihood = _autoregressive(6, 5 if kind == "hidden units" else 0)
    logits = torch.randn(6, generator=torch.Generator().manual_seed(7))
    n = 60_000
    drawn = likelihood.draw(logits.expand(n, 6), torch.Generator().manual_seed(8))  # (n, 6)
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}
    index = (drawn * 2 ** torch.arange(6)).sum(-1).long()  # each draw's image, as a number 0 .. 63
    frequency = torch.bincount(index, minlength=64).double() / n
    every_x = torch.tensor([[(m >> i) & 1 for i in range(6)] for m in range(64)], dtype=torch.float32)
    p = likelihood.log_prob(logits.expand(64, 6), every_x).exp().double()  # (64,), sums to 1
    stderr = (p * (1 - p) / n).sqrt()
    assert ((frequency - p).abs() <= 4.5 * stderr + 1e-4).all()
    mean_field = likelihood.mean(logits[None])[0]  # not what the draws average to once values interact
    assert (drawn.mean(0) - mean_field).abs().max() > 0.02


def test_drawn_values_of_the_plain_likelihoods():
    """Bernoulli draws are 0 or 1 with the mean's frequency; Gaussian draws have the mean and sigma."""
    g = torch.Generator().manual_seed(9)
    logits = torch.tensor([-2.0, 0.0, 3.0])
    drawn = Bernoulli().draw(logits.expand(40_000, 3), g)
    assert set(drawn.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(drawn.mean(0), torch.sigmoid(logits), atol=0.01, rtol=0)
    means = torch.tensor([-1.0, 0.5])
    drawn = Gaussian(sigma=0.3).draw(means.expand(40_000, 2), g)
    torch.testing.assert_close(drawn.mean(0), means, atol=0.01, rtol=0)
    torch.testing.assert_close(drawn.std(0), torch.full((2,), 0.3), atol=0.01, rtol=0)


def test_loss_falls_on_digits(digits_run):
    metrics = [m for m in vaekit.runs.read_metrics(digits_run)]
    assert len(metrics) == 20
    assert metrics[-1]["train_loss"] < 0.8 * metrics[0]["train_loss"]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    # an untrained decoder gives 64 * log 2 = 44.4 nats per 8x8 image; a trained one does far better
    assert metrics[-1]["val_loss"] < 64 * math.log(2) * 0.7


def test_invalid_model_settings_are_clear_errors():
    with pytest.raises(vaekit.VaekitError, match="latent dim must be at least 1"):
        build_model(ModelConfig(input_shape=(4,), latent_dim=0, likelihood="bernoulli"))


def test_dropout_acts_on_the_generative_networks_in_training_only():
    cfg = ModelConfig(input_shape=(1, 8, 8), hidden=(64, 32), latent_dim=3, hierarchy=(4,), likelihood="bernoulli")
    plain, dropped = build_model(cfg), build_model(dataclasses.replace(cfg, dropout=0.5))
    # the same parameters in the same order (the names shift past each Dropout; a model file names its config)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in dropped.parameters()]
    with torch.no_grad():
        for mine, theirs in zip(dropped.parameters(), plain.parameters()):
            mine.copy_(theirs)
    z = torch.randn(6, 3 + 4)  # the decoder reads [z2, z1]
    dropped.train()
    assert not torch.equal(dropped.decoder(z), dropped.decoder(z))  # a fresh mask each call
    assert not torch.equal(dropped.lower[0].p(z[:, :3])[0], dropped.lower[0].p(z[:, :3])[0])
    dropped.eval()  # off in use: the same function as the model without it
    assert torch.equal(dropped.decoder(z), plain.eval().decoder(z))
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(dropped.encode(x)[0], plain.encode(x)[0])  # the encoder has none
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
