"""ONNX export: the encoder and decoder graphs run in onnxruntime and match torch (fp32) on real items."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import vaekit
from vaekit import runs
from vaekit.cli import main
from vaekit.tensors import as_tensor, model_input

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# fp32, absolute: measured at most 2.4e-6 (a conv AE's codes, up to ~7.5 in size), 3e-8 to 6e-7 elsewhere;
# no rtol is needed since the outputs are at most O(10), where float32 rounding is ~1e-6
ATOL = 1e-5


# a VAE with a lower stochastic layer and the VampPrior: its decoder graph holds p(z1 | z2) too
LAYERED = {"hvae-vamp": {"model": "vae", "hierarchy": (8,), "prior": "vamp", "prior_components": 20}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small run per (model, arch) on the embedded digits, trained a few epochs (seconds each; conv nets
    take 12 epochs of 12 steps before their decodings differ by item)."""
    made = {}

    def get(model: str, arch: str):
        if (model, arch) not in made:
            run_dir = tmp_path_factory.mktemp("onnx") / f"{model}-{arch}"
            settings = LAYERED.get(model, {"model": model})
            vaekit.train(dataset="digits", arch=arch, epochs=3 if arch == "mlp" and model not in LAYERED else 12,
                         run_dir=run_dir,
                         progress=False, pictures=False, **settings)
            made[model, arch] = run_dir
        return made[model, arch]
    return get


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model_name,arch", [("vae", "mlp"), ("vae", "conv"), ("ae", "mlp"), ("ae", "conv"),
                                             ("hvae-vamp", "mlp")])
def test_onnx_graphs_match_torch_at_any_batch_size(trained, model_name, arch):
    run_dir = trained(model_name, arch)
    paths = vaekit.export(run_dir)
    assert paths["encoder"] == run_dir / "onnx" / "encoder.onnx"
    model, cfg, _ = runs.load_model(run_dir)
    x = model_input(as_tensor(vaekit.input_data(run_dir), torch.device("cpu")))  # (N, 1, 8, 8) test items in [0, 1]
    assert len(x) >= 37
    encoder, decoder = _session(paths["encoder"]), _session(paths["decoder"])
    names = ["code"] if model_name == "ae" else ["mean", "logvar"]
    assert [o.name for o in encoder.get_outputs()] == names
    assert encoder.get_inputs()[0].shape == ["batch", 1, 8, 8]  # the batch axis is symbolic
    assert decoder.get_inputs()[0].shape == ["batch", cfg.model.latent_dim]
    for n in (1, 37):
        with torch.no_grad():
            expected = [t.numpy() for t in model.encoder_outputs(x[:n]).values()]  # each (n, L)
            z = expected[0]  # the posterior means (an AE's codes)
            decoded = model.decode_mean(torch.from_numpy(z)).numpy()  # (n, 1, 8, 8)
        got = encoder.run(None, {"x": x[:n].numpy()})
        got_decoded = decoder.run(None, {"z": z})[0]
        assert got_decoded.shape == decoded.shape == (n, 1, 8, 8)
        for name, a, b in [*zip(names, got, expected), ("x_mean", got_decoded, decoded)]:
            assert a.shape == b.shape and a.dtype == np.float32
            diff = float(np.abs(a - b).max())
            print(f"{model_name}-{arch} batch {n} {name}: max |onnx - torch| = {diff:.3g}, max |torch| = "
                  f"{np.abs(b).max():.3g}")  # shown with pytest -s
            assert diff <= ATOL, f"{name}: max abs difference {diff:.3g} at batch {n}"
    # the outputs are not trivially equal: the items differ in their codes and decodings
    assert np.ptp(expected[0], axis=0).max() > 0.1 and np.ptp(decoded, axis=0).max() > 0.1
    info = json.loads(paths["info"].read_text())
    assert info["encoder"]["outputs"] == {k: ["batch", cfg.model.latent_dim] for k in names}
    assert info["decoder"]["outputs"] == {"x_mean": ["batch", 1, 8, 8]} and info["standardize"] is None


def test_onnx_export_of_a_model_of_labels_takes_the_class(tmp_path):
    """M2 (trained on 50 digits labels): the encoder also gives class_logits (batch, 10) and the decoder takes the
    class y beside z, so a chosen class decodes as in torch."""
    run_dir = tmp_path / "m2"
    vaekit.train(dataset="digits", model="m2", labels=50, epochs=3, run_dir=run_dir, progress=False, pictures=False)
    paths = vaekit.export(run_dir)
    model, cfg, _ = runs.load_model(run_dir)
    latent, k = cfg.model.latent_dim, cfg.model.n_classes
    assert k == 10
    info = json.loads(paths["info"].read_text())
    assert info["encoder"]["outputs"] == {"mean": ["batch", latent], "logvar": ["batch", latent],
                                          "class_logits": ["batch", k]}
    assert info["decoder"]["inputs"] == {"z": ["batch", latent], "y": ["batch", k]}
    x = model_input(as_tensor(vaekit.input_data(run_dir), torch.device("cpu")))[:23]  # (23, 1, 8, 8)
    labels = torch.arange(23) % k
    with torch.no_grad():
        expected = [t.numpy() for t in model.encoder_outputs(x).values()]
        decoded = model.decode_class(torch.from_numpy(expected[0]), labels).numpy()  # (23, 1, 8, 8)
    got = _session(paths["encoder"]).run(None, {"x": x.numpy()})
    decoder = _session(paths["decoder"])
    assert [i.name for i in decoder.get_inputs()] == ["z", "y"]
    onehot = np.eye(k, dtype=np.float32)[labels.numpy()]
    got_decoded = decoder.run(None, {"z": expected[0], "y": onehot})[0]
    for a, b in [*zip(got, expected), (got_decoded, decoded)]:
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= ATOL
    assert got[2].shape == (23, k)
    # the class steers the decoding: one z decoded as two classes differs
    two = decoder.run(None, {"z": expected[0][:2].repeat(1, 0)[[0, 0]], "y": np.eye(k, dtype=np.float32)[[0, 1]]})[0]
    assert np.abs(two[0] - two[1]).max() > 0.05


def test_onnx_export_of_a_csv_run_records_its_standardisation(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal([5.0, -3.0, 100.0], [1.0, 2.0, 10.0], size=(120, 3))
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in table) + "\n")
    run_dir = tmp_path / "run"
    vaekit.train(dataset=f"csv:{path}", epochs=2, latent_dim=2, hidden=(16,), run_dir=run_dir, progress=False,
                 pictures=False)
    paths = vaekit.export(run_dir, out=tmp_path / "exported")
    info = json.loads(paths["info"].read_text())
    _, _, standardizer = runs.load_model(run_dir)
    np.testing.assert_allclose(info["standardize"]["mean"], standardizer.mean, rtol=1e-6)
    np.testing.assert_allclose(info["standardize"]["std"], standardizer.std, rtol=1e-6)
    np.testing.assert_allclose(info["standardize"]["mean"], [5.0, -3.0, 100.0], atol=1.0)  # the training split's
    assert info["likelihood"] == "gaussian" and info["encoder"]["inputs"] == {"x": ["batch", 3]}
    out = _session(paths["decoder"]).run(None, {"z": np.zeros((5, 2), np.float32)})[0]
    assert out.shape == (5, 3)


def test_cli_export_refuses_to_overwrite_and_names_the_file(trained, capsys):
    run_dir = trained("vae", "mlp")
    out = run_dir / "cli-onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "model.json"]
    before = (out / "encoder.onnx").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaekit: error: ") and "--overwrite" in err
    assert (out / "encoder.onnx").stat().st_mtime_ns == before
    assert main(["export", str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_export_errors_are_one_line(trained, tmp_path, monkeypatch, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["export", str(trained("vae", "mlp")), "--format", "tflite"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    assert main(["export", str(trained("vae", "mlp")), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'vaekit[onnx]'" in err and "onnxscript" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(vaekit.VaekitError, match="unknown export format"):
        vaekit.export(trained("vae", "mlp"), format="tflite")
