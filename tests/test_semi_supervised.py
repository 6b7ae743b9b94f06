"""Few labels: the semi-supervised VAE (M2 and M1+M2 of Kingma et al. 2014) as a scikit-learn classifier."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import vaekit
from vaekit.training import oversample_labelled


@pytest.fixture(scope="module")
def few_labels():
    """Digits in [0, 1]: 1,297 training rows with 10 labels per class (the rest -1), 500 test rows."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:500], order[500:]
    y_few = np.full(len(train), -1)
    for c in range(10):
        y_few[np.flatnonzero(y[train] == c)[:10]] = c
    return X[train], y_few, X[test], y[test], y[train]


@pytest.fixture(scope="module")
def m2(few_labels):
    X, y_few, *_ = few_labels
    return vaekit.SemiSupervisedVAE(epochs=60, random_state=0).fit(X, y_few)


def test_ten_labels_per_class_beat_logistic_regression_on_those_labels(few_labels, m2):
    X, y_few, X_test, y_test, _ = few_labels
    labelled = y_few >= 0
    baseline = LogisticRegression(max_iter=5000).fit(X[labelled], y_few[labelled]).score(X_test, y_test)
    accuracy = m2.score(X_test, y_test)
    assert accuracy > baseline + 0.01, (accuracy, baseline)  # measured: 0.93 against 0.90 at 3,000 steps
    proba = m2.predict_proba(X_test)
    assert proba.shape == (500, 10) and np.allclose(proba.sum(1), 1)
    assert m2.transform(X_test).shape == (500, m2.latent_dim_)


def test_conditional_samples_come_out_in_the_asked_class(few_labels, m2):
    X, _, X_test, y_test, y_all = few_labels
    judge = LogisticRegression(max_iter=5000).fit(X, y_all)  # trained on every label
    hits = [np.mean(judge.predict(m2.sample(20, random_state=c, y=c)) == c) for c in range(10)]
    assert np.mean(hits) > 0.7, hits
    with pytest.raises(ValueError, match="not one of the fitted classes"):
        m2.sample(2, y=11)
    # draw=True: 0/1 values drawn from p(x | y, z) at the same codes (the same random_state); over many items
    # their average is that of the means
    means, drawn = m2.sample(4000, random_state=0, y=3), m2.sample(4000, random_state=0, y=3, draw=True)
    assert set(np.unique(drawn)) == {0.0, 1.0} and np.array_equal(drawn, m2.sample(4000, random_state=0, y=3, draw=True))
    np.testing.assert_allclose(drawn.mean(0), means.mean(0), atol=0.04)  # 4.5 standard errors of 4,000 draws


def test_unlabelled_rows_are_minus_one_and_classes_keep_their_values(few_labels):
    X, y_few, *_ = few_labels
    with pytest.raises(ValueError, match="needs at least 2"):
        vaekit.SemiSupervisedVAE(epochs=1).fit(X, np.full(len(X), -1))
    with pytest.raises(ValueError, match="one label per row"):
        vaekit.SemiSupervisedVAE(epochs=1).fit(X, y_few[:-1])
    two = np.where(np.isin(y_few, (3, 7)), y_few, -1)  # labels 3 and 7 only: predictions are 3 or 7
    clf = vaekit.SemiSupervisedVAE(epochs=2, random_state=0).fit(X, two)
    assert clf.classes_.tolist() == [3, 7] and set(np.unique(clf.predict(X[:50]))) <= {3, 7}


def test_labelled_rows_are_oversampled_to_a_quarter_of_an_epoch():
    y = torch.tensor([-1] * 900 + [0, 1] * 5)
    x = torch.arange(len(y))
    xs, ys = oversample_labelled(x, y)
    assert int((ys >= 0).sum()) / len(ys) == pytest.approx(0.25, abs=0.02)
    assert set(xs[ys >= 0].tolist()) == set(range(900, 910)) and int((ys < 0).sum()) == 900


def test_save_and_load_round_trip_m2_and_m1_plus_m2(tmp_path, few_labels, m2):
    X, y_few, X_test, *_ = few_labels
    loaded = vaekit.load(m2.save(tmp_path / "m2"))
    assert type(loaded) is vaekit.SemiSupervisedVAE
    assert np.array_equal(loaded.predict_proba(X_test), m2.predict_proba(X_test))
    assert np.array_equal(loaded.sample(3, random_state=0, y=4), m2.sample(3, random_state=0, y=4))
    stacked = vaekit.SemiSupervisedVAE(m1_latent_dim=8, epochs=3, random_state=0).fit(X, y_few)
    again = vaekit.load(stacked.save(tmp_path / "m1m2"))
    assert np.array_equal(again.predict(X_test), stacked.predict(X_test))
    assert again.sample(2, random_state=0, y=1).shape == (2, 64)


def test_m1_takes_every_parameter_it_shares_but_m2s_code_and_early_stopping(few_labels):
    X, y_few, *_ = few_labels
    settings = dict(hidden=(32,), optimizer="rmsprop", weight_decay=0.01, dropout=0.1, lr=2e-3, batch_size=64,
                    lr_schedule="cosine", standardize=False, epochs=2, random_state=3)
    stacked = vaekit.SemiSupervisedVAE(m1_latent_dim=6, prior="mog", prior_components=5, latent_dim=3,
                                       **settings).fit(X, y_few)
    m1 = stacked.m1_.get_params()
    assert {name: m1[name] for name in settings} == settings
    assert (m1["latent_dim"], m1["prior"], m1["early_stopping"]) == (6, "normal", False)
    assert (stacked.m2_.prior, stacked.m2_.latent_dim) == ("mog", 3)


def test_m1_plus_m2_models_the_dims_m1_uses_from_draws_of_its_code(few_labels):
    """As Kingma et al.'s code: M2 sees z1 ~ q(z1|x) in the dims whose posterior means vary, and classifies by
    the means."""
    X, y_few, X_test, _, y_all = few_labels
    stacked = vaekit.SemiSupervisedVAE(m1_latent_dim=16, m1_draws=4, epochs=40, random_state=0).fit(X, y_few)
    used = np.flatnonzero(stacked.m1_.transform(X).std(0) > 0.1)
    assert stacked.m1_dims_.tolist() == used.tolist() and 0 < len(used) <= 16
    assert stacked.m2_.n_features_in_ == len(used)
    assert stacked.m2_.n_iter_ == 10  # 40 epochs' worth: ten passes over four draws of each item
    means = torch.from_numpy(stacked.m1_.transform(X_test)[:, used]).float()
    logits = stacked.m2_.model_.class_logits(stacked.m2_._model_input(means.numpy())).float()
    assert np.allclose(stacked.predict_proba(X_test), logits.softmax(-1).detach().cpu().numpy(), atol=1e-6)
    judge = LogisticRegression(max_iter=5000).fit(X, y_all)  # conditional samples, decoded by M1, in their class
    hits = [np.mean(judge.predict(stacked.sample(20, random_state=c, y=c)) == c) for c in range(10)]
    assert np.mean(hits) > 0.7, hits  # measured: 1.0
    with pytest.raises(ValueError, match="m1_draws must be a positive integer, got 0"):
        vaekit.SemiSupervisedVAE(m1_latent_dim=4, m1_draws=0, epochs=1).fit(X, y_few)


def test_early_stopping_holds_out_every_draw_of_an_item():
    from vaekit.estimators import _validation_rows

    labels = np.tile(np.r_[0, 1, np.full(18, -1)], 3)  # 20 items (2 labelled), 3 draws each, draw-major
    items = np.tile(np.arange(20), 3)
    rows = _validation_rows(60, labels, items, 0.25, seed=0)
    held = np.unique(items[rows])
    assert len(held) == 4 and np.all(labels[rows] == -1)  # a quarter of the 18 unlabelled items, rounded
    assert rows.tolist() == np.flatnonzero(np.isin(items, held)).tolist()  # all three draws of each
    assert len(_validation_rows(60, labels, None, 0.25, seed=0)) == 14  # without items, rows: a quarter of 54


def test_keep_labels_spreads_n_labels_evenly_over_the_classes_and_is_seeded():
    from vaekit.data import keep_labels, load_splits

    train = load_splits(vaekit.DataConfig(dataset="digits")).train
    kept = keep_labels(train, 25, seed=1)
    counts = np.bincount(kept.y[kept.y >= 0], minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1 and (kept.y == -1).sum() == len(train) - 25
    assert np.array_equal(kept.y, keep_labels(train, 25, seed=1).y)
    assert not np.array_equal(kept.y, keep_labels(train, 25, seed=2).y)
    assert np.all(kept.y[kept.y >= 0] == train.y[kept.y >= 0])  # kept labels are the true ones
    with pytest.raises(vaekit.DataError, match="--labels 5 must be between"):
        keep_labels(train, 5)


def test_cli_trains_m2_from_n_labels_and_reports_accuracy_probes_and_samples_by_class(tmp_path, capsys):
    from PIL import Image

    from vaekit.cli import main

    run = tmp_path / "m2"
    assert main(["train", "--dataset", "digits", "--model", "m2", "--labels", "50", "--epochs", "8",
                 "--run-dir", str(run), "--quiet", "--device", "cpu"]) == 0
    summary = __import__("json").loads((run / "summary.json").read_text())
    assert 0.5 < summary["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    pictures = summary["pictures"]
    assert pictures["probe_labels"] == 50 and 0 <= pictures["linear_probe_accuracy"] <= 1
    assert Image.open(run / "samples_by_class.png").size[1] > Image.open(run / "samples.png").size[1] * 10 / 8 * 0.9
    report = (run / "report.html").read_text()
    assert "samples_by_class.png" in report and "test accuracy of the classifier" in report
    confusion = np.array(pictures["test_confusion"])  # rows: true classes, columns: predicted
    test_y = vaekit.load_splits(vaekit.DataConfig(dataset="digits")).test.y
    assert confusion.shape == (10, 10) and confusion.sum(1).tolist() == np.bincount(test_y).tolist()
    assert confusion.trace() / confusion.sum() == pytest.approx(summary["test_accuracy"])
    assert "confusion.png" in report and Image.open(run / "confusion.png").size[0] > 300
    metrics = vaekit.runs.read_metrics(run)  # validation accuracy by epoch; the bound falls
    curve = [m["val_accuracy"] for m in metrics]  # (epoch 1 is already ~0.8: its rows are a quarter labelled)
    assert len(curve) == 8 and curve[-1] > 0.5 and "<th>val_accuracy</th>" in report
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    assert vaekit.load(run).classes_.tolist() == list(range(10))
    # `vaekit sample --class K`: items of class K, which the model's own classifier names K
    clf = vaekit.load(run)
    for k in (3, 7):
        assert main(["sample", str(run), "-n", "40", "--class", str(k), "--out", str(tmp_path / f"{k}.npz")]) == 0
        items = np.load(tmp_path / f"{k}.npz")["x"]
        assert items.shape == (40, 1, 8, 8) and np.mean(clf.predict(items) == k) > 0.6
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "10", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--class must be one of the run's classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; got 10" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    assert main(["evaluate", str(run), "--nll"]) == 2  # one line, no wrong number
    assert "importance-sampled" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--model", "m2", "--normal-class", "3", "--epochs", "1",
                 "--run-dir", str(tmp_path / "one"), "--quiet"]) == 2  # one class: no classifier to learn


def test_early_stopping_validates_on_unlabelled_rows_and_keeps_every_class(few_labels, tmp_path):
    X, y_few, X_test, *_ = few_labels
    three = np.full(len(X), -1)
    three[:3] = [0, 1, 2]  # one label per class: none may end in the validation split
    for seed in (3, 8, 20):
        clf = vaekit.SemiSupervisedVAE(latent_dim=2, epochs=1, early_stopping=True, random_state=seed).fit(X, three)
        assert clf.predict_proba(X_test[:2]).shape == (2, 3)
        assert "val_loss" in clf.history_[0] and "val_accuracy" not in clf.history_[0]  # no labels there to score
    stacked = vaekit.SemiSupervisedVAE(m1_latent_dim=4, epochs=1, random_state=0).fit(X, y_few)
    stacked.save(tmp_path / "s")
    assert vaekit.load(stacked.save(tmp_path / "s", overwrite=True)).classes_.tolist() == list(range(10))
    drawn = stacked.sample(50, y=1, random_state=0, draw=True)  # M1's code drawn from M2, then M1's pixels
    assert drawn.shape == (50, 64) and set(np.unique(drawn)) <= {0.0, 1.0}
    assert not np.array_equal(drawn, stacked.sample(50, y=1, random_state=1, draw=True))


def test_kl_warm_up_scales_the_code_kl_but_not_the_class_kl():
    """Kingma et al.'s class term KL(q(y|x) || p(y)) (its entropy) stays whole while the KL weight ramps up."""
    from vaekit.config import ModelConfig, TrainConfig
    from vaekit.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(model="m2", input_shape=(12,), hidden=(16,), latent_dim=3, n_classes=4,
                                    likelihood="bernoulli"))
    x, labels = torch.rand(6, 12), torch.tensor([-1, -1, -1, 2, 0, -1])
    cfg = TrainConfig(alpha=1.0)
    torch.manual_seed(1)
    terms = model.loss(x, labels=labels)
    assert torch.allclose(terms["kl_y"][labels >= 0], torch.full((2,), np.log(4.0)))
    assert (terms["kl_y"][labels < 0] >= 0).all() and (terms["kl"] >= terms["kl_y"]).all()
    for weight in (0.0, 0.3, 1.0):
        torch.manual_seed(1)  # the same z draws as ``terms``
        loss, _ = model.objective(x, x, cfg, weight, labels)
        bound = terms["recon"] + weight * (terms["kl"] - terms["kl_y"]) + terms["kl_y"]
        expected = bound[labels >= 0].mean() + bound[labels < 0].mean() + terms["ce"][labels >= 0].mean()
        assert torch.allclose(loss, expected, atol=1e-5), (weight, loss, expected)


def test_default_epochs_count_the_repeated_labelled_rows():
    """Unset --epochs means about min_steps optimiser steps, with the labelled items repeated in each epoch."""
    from vaekit.config import build_config
    from vaekit.data import load_splits
    from vaekit.training import epoch_rows, resolve_config

    cfg = build_config(dataset="digits", model="m2", labels=50)
    splits = load_splits(cfg.data)  # with 50 labels kept
    train = splits.train
    rows = epoch_rows(len(train), train.y)
    assert rows > 1.2 * len(train)  # 50 labels among ~1,300 rows are repeated to about a quarter of the epoch
    resolved = resolve_config(cfg, splits)
    steps = resolved.train.epochs * int(np.ceil(rows / resolved.train.batch_size))
    assert cfg.train.min_steps <= steps < cfg.train.min_steps + int(np.ceil(rows / resolved.train.batch_size))


def test_m2_refuses_compile_and_an_m1_plus_m2_folder_names_its_parts(tmp_path, few_labels, capsys):
    from vaekit.cli import main

    assert main(["train", "--dataset", "digits", "--model", "m2", "--labels", "50", "--compile", "--epochs", "1",
                 "--run-dir", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--compile does not apply to --model m2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    X, y_few, *_ = few_labels
    stacked = vaekit.SemiSupervisedVAE(m1_latent_dim=4, epochs=1, random_state=0).fit(X, y_few)
    folder = stacked.save(tmp_path / "m1m2")
    with pytest.raises(vaekit.VaekitError, match="m1/ or m2/"):
        vaekit.sample(stacked, 4)
    assert main(["sample", str(folder), "-n", "4", "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err
    assert "M1+M2 model is two models" in err and len(err.strip().splitlines()) == 1
    assert main(["sample", str(folder / "m1"), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0


def test_consistency_between_augmented_views_beats_m2_alone(few_labels, m2):
    X, y_few, X_test, y_test, _ = few_labels
    images = vaekit.SemiSupervisedVAE(epochs=60, random_state=0, consistency=1.0)
    images.fit(X.reshape(-1, 1, 8, 8), y_few)  # the same digits as 8x8 images, so they can be shifted and turned
    accuracy = images.score(X_test.reshape(-1, 1, 8, 8), y_test)
    assert accuracy > m2.score(X_test, y_test) + 0.005, accuracy  # measured 0.954 (seeds 0, 1) against 0.930
    with pytest.raises(vaekit.DataError, match="--consistency compares augmented views of images"):
        vaekit.SemiSupervisedVAE(epochs=1, consistency=1.0).fit(X, y_few)  # flat rows: nothing to shift
    with pytest.raises(ValueError, match="with m1_latent_dim, M2 sees M1's codes"):
        vaekit.SemiSupervisedVAE(epochs=1, consistency=1.0, m1_latent_dim=4).fit(X.reshape(-1, 1, 8, 8), y_few)


def test_consistency_targets_are_labels_or_confident_guesses_of_a_weak_view():
    from vaekit.config import ModelConfig
    from vaekit.data.transforms import random_affine
    from vaekit.models import build_model

    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    assert torch.allclose(random_affine(x, 0, 0, 0), x, atol=1e-5)  # no turn, zoom or shift: the image itself
    dot = torch.zeros(64, 1, 28, 28)
    dot[:, :, 13:15, 13:15] = 1.0
    moved = random_affine(dot, 0, 0, 3 / 28)
    rows = torch.arange(28.0)[:, None].expand(28, 28)
    centre = (moved[:, 0] * rows).sum((1, 2)) / moved[:, 0].sum((1, 2))  # rows: up to 3 px from 13.5
    assert (centre - 13.5).abs().max() <= 3.01 and (centre - 13.5).abs().max() > 1.5
    assert torch.allclose(moved.sum((1, 2, 3)), dot.sum((1, 2, 3)), rtol=0.02)  # moved, not lost
    model = build_model(ModelConfig(model="m2", input_shape=(1, 28, 28), hidden=(32,), latent_dim=4, n_classes=10,
                                    likelihood="bernoulli"))
    labels = torch.tensor([3, -1, -1, 5, -1, -1])
    everything = model.consistency_loss(x, labels, threshold=0.0)  # every unlabelled item keeps its guess
    only_labels = model.consistency_loss(x, labels, threshold=1.01)  # no guess is that sure
    assert (everything > 0).all() and (only_labels[labels < 0] == 0).all() and (only_labels[labels >= 0] > 0).all()
    with torch.no_grad():  # an untrained classifier: each labelled term is about -log(1/10)
        assert only_labels[labels >= 0].mean().item() == pytest.approx(np.log(10), rel=0.2)


def test_consistency_needs_m2_and_a_sane_threshold(tmp_path, capsys):
    from vaekit.cli import main

    for args, message in ((["--model", "vae", "--consistency", "1"], "it applies to --model m2, not vae"),
                          (["--model", "m2", "--labels", "50", "--consistency", "-1"], "--consistency must be >= 0"),
                          (["--model", "m2", "--labels", "50", "--consistency", "1", "--consistency-threshold", "2"],
                           "--consistency-threshold in [0, 1]")):
        assert main(["train", "--dataset", "digits", *args, "--epochs", "1", "--run-dir", str(tmp_path / "r"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()


def test_a_conv_classifier_beside_an_mlp_vae_learns_and_round_trips(tmp_path, few_labels, capsys):
    from vaekit.cli import main
    from vaekit.models.networks import ConvEncoder, MLPDecoder

    X, y_few, X_test, y_test, _ = few_labels
    images, test_images = X.reshape(-1, 1, 8, 8), X_test.reshape(-1, 1, 8, 8)
    clf = vaekit.SemiSupervisedVAE(classifier_arch="conv", conv_channels=(16, 32), epochs=30, random_state=0,
                                   consistency=1.0).fit(images, y_few)
    assert isinstance(clf.model_.classifier, ConvEncoder) and isinstance(clf.model_.decoder, MLPDecoder)
    labelled = y_few >= 0
    baseline = LogisticRegression(max_iter=5000).fit(X[labelled], y_few[labelled]).score(X_test, y_test)
    assert clf.score(test_images, y_test) > baseline, baseline  # measured 0.95 against 0.90
    loaded = vaekit.load(clf.save(tmp_path / "conv"))
    assert np.array_equal(loaded.predict_proba(test_images), clf.predict_proba(test_images))
    with pytest.raises(vaekit.DataError, match="--classifier-arch conv needs images"):
        vaekit.SemiSupervisedVAE(classifier_arch="conv", epochs=1).fit(X, y_few)  # flat rows
    with pytest.raises(ValueError, match="with m1_latent_dim, M2's classifier sees M1's codes"):
        vaekit.SemiSupervisedVAE(classifier_arch="conv", m1_latent_dim=4, epochs=1).fit(images, y_few)
    assert main(["train", "--dataset", "digits", "--model", "vae", "--classifier-arch", "conv", "--epochs", "1",
                 "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--classifier-arch is the network of m2's classifier; --model vae has none" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_cutout_blanks_one_square_and_alignment_distrusts_a_batch_that_guesses_one_class():
    from vaekit.config import ModelConfig
    from vaekit.data.transforms import STRONG_CUTOUT, cutout
    from vaekit.models import build_model

    holes = cutout(torch.ones(200, 1, 28, 28), STRONG_CUTOUT, torch.Generator().manual_seed(0)) == 0  # (B, 1, H, W)
    rows, cols = holes[:, 0].any(2).sum(1), holes[:, 0].any(1).sum(1)  # each hole's height and width
    assert (holes.sum((1, 2, 3)) == rows * cols).all()  # a rectangle: a square clipped at the border
    assert rows.max() == 11 and cols.max() == 11 and rows.min() >= 6 and (rows * cols == 121).float().mean() > 0.3
    model = build_model(ModelConfig(model="m2", input_shape=(1, 28, 28), hidden=(32,), latent_dim=4, n_classes=10,
                                    likelihood="bernoulli"))
    x, unlabelled = torch.rand(100, 1, 28, 28), torch.full((100,), -1)
    sure = torch.full((100, 10), -10.0)  # every item 99.9 % sure of its class...
    sure[torch.arange(100), torch.arange(100) % 10] = 0.0  # ...and the batch spread evenly over the classes
    model.class_logits = lambda images: sure
    assert (model.consistency_loss(x, unlabelled, threshold=0.95) > 0).all()  # every guess is a target
    one_class = torch.full((100, 10), -10.0)
    one_class[:, 0] = 0.0  # the same confidence, all in class 0: aligned to p(y) = 1/10, no guess is sure enough
    model.class_logits = lambda images: one_class
    assert (model.consistency_loss(x, unlabelled, threshold=0.95) == 0).all()


def test_sample_class_takes_the_names_an_estimator_was_fitted_on(few_labels, tmp_path, capsys):
    """`vaekit sample --class NAME` on a folder an estimator saved after fitting on class names: items of that class,
    which the model's own classifier names so; a name it was not fitted on is one line, exit 2, nothing written."""
    from vaekit.cli import main

    X, y_few, *_ = few_labels
    words = np.array("zero one two three four five six seven eight nine".split(), dtype=object)
    y_named = np.where(y_few >= 0, words[np.maximum(y_few, 0)], -1).astype(object)
    clf = vaekit.SemiSupervisedVAE(epochs=30, random_state=0, device="cpu").fit(X, y_named)
    assert sorted(clf.classes_.tolist()) == sorted(words.tolist())
    folder = clf.save(tmp_path / "named")
    assert main(["sample", str(folder), "-n", "40", "--class", "three", "--out", str(tmp_path / "three.npz")]) == 0
    items = np.load(tmp_path / "three.npz")["x"]
    assert items.shape == (40, 64) and np.mean(clf.predict(items) == "three") > 0.6
    assert vaekit.sample(folder, 4, label="seven").shape == (4, 64)
    capsys.readouterr()
    assert main(["sample", str(folder), "--class", "3", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "--class must be one of the run's classes eight, five, four, nine, one" in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


def test_a_class_is_found_by_its_value_or_its_text():
    """``class_index``, which ``sample(y=...)`` and ``vaekit sample --class`` use: a float class 3.0 is named by 3
    and by "3" (the command line's text), a name by itself; anything else is None."""
    clf = vaekit.SemiSupervisedVAE()
    clf.classes_ = np.array([0.0, 1.5, 3.0])
    assert [clf.class_index(y) for y in (3, "3", 3.0, "1.5", np.int64(0), "cat", 2)] == [2, 2, 2, 1, 0, None, None]
    clf.classes_ = np.array(["cat", "dog"], dtype=object)
    assert [clf.class_index(y) for y in ("dog", "cat", 0, "0")] == [1, 0, None, None]
