"""The explorer's server without a browser: what the JSON API answers, and that every bad request is a 4xx."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

starlette = pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import vaekit  # noqa: E402
from vaekit.errors import VaekitError  # noqa: E402
from vaekit.explore import bind  # noqa: E402
from vaekit.explore.app import MAX_BODY, MAX_CODES, MAX_STEPS, build_app  # noqa: E402
from vaekit.explore.state import RunState  # noqa: E402


@pytest.fixture(scope="module")
def state(digits_run) -> RunState:
    return RunState(digits_run)


@pytest.fixture(scope="module")
def client(state) -> TestClient:
    return TestClient(build_app(state))


@pytest.fixture(scope="module")
def info(client) -> dict:
    return client.get("/api/info").json()


def _pixels(item: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item), np.uint8).reshape(shape)


def test_info_holds_the_plane_and_its_map_back_to_z(state, info):
    L = state.latent_dim
    assert L == 20 and info["latent_dim"] == L and info["kind"] == "image" and info["item_shape"] == [1, 8, 8]
    points = np.array(info["points"])
    assert points.shape == (len(state.test), 2) and len(info["labels"]) == len(points)
    assert info["axis_names"][0].startswith("PC1 of the 20-D latent means")
    center, axes = np.array(info["center"]), np.array(info["axes"])  # (L,), (2, L)
    np.testing.assert_allclose((state.means - center) @ axes.T, points, atol=2e-4)  # points are the PCA
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-5)  # so z = center + axes.T p inverts it in-plane


def test_sliders_are_ordered_by_kl(info, state):
    from vaekit import latent
    from vaekit.tensors import as_tensor

    kl = latent.kl_per_dim(state.model, as_tensor(state.test, state.device))
    assert info["dims"] == [int(d) for d in np.argsort(-kl, kind="stable")]
    assert info["dim_use"] == sorted(info["dim_use"], reverse=True) and info["use_name"] == "KL (nats)"
    assert len(info["dim_range"]) == 20 and all(lo <= -3 and hi >= 3 for lo, hi in info["dim_range"])


def test_decode_returns_the_models_images(client, digits_run):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 20)).astype(np.float32)
    r = client.post("/api/decode", json={"z": z.tolist()})
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    expected = (np.clip(vaekit.decode(digits_run, np.round(z, 4)), 0, 1) * 255 + 0.5).astype(np.uint8)
    for item, want in zip(r.json()["items"], expected):
        np.testing.assert_array_equal(_pixels(item, (1, 8, 8)), want)
    one = client.post("/api/decode", json={"z": z[0].tolist()}).json()["items"]  # one code: a flat list
    assert one == r.json()["items"][:1]


def test_drawn_decodes_are_binary_reproducible_and_average_to_the_mean(client, state, info):
    """``draw``: values drawn from p(x | z) (0 or 1 for these Bernoulli pixels) by a generator of the given seed,
    never cached; over many draws of one code their average is the mean the plain decode shows."""
    assert info["approximate_mean"] is False  # a Bernoulli likelihood's mean is exact: the page starts unticked
    z = np.random.default_rng(1).normal(size=(1, 20)).round(4).astype(np.float32)
    cached = len(state._cache)
    first = client.post("/api/decode", json={"z": z.tolist(), "draw": True, "seed": 7}).json()["items"]
    again = client.post("/api/decode", json={"z": z.tolist(), "draw": True, "seed": 7}).json()["items"]
    other = client.post("/api/decode", json={"z": z.tolist(), "draw": True, "seed": 8}).json()["items"]
    assert first == again and first != other and len(state._cache) == cached
    assert set(np.unique(_pixels(first[0], (1, 8, 8)))) <= {0, 255}
    frames = client.post("/api/interpolate", json={"i": 3, "j": 7, "steps": 6, "draw": True, "seed": 7}).json()
    assert frames == client.post("/api/interpolate", json={"i": 3, "j": 7, "steps": 6, "draw": True,
                                                            "seed": 7}).json()  # the strip draws the same way
    assert all(set(np.unique(_pixels(f, (1, 8, 8)))) <= {0, 255} for f in frames["frames"])
    bad = client.post("/api/interpolate", json={"i": 3, "j": 7, "draw": True, "seed": "7"})
    assert bad.status_code == 422 and "seed must be an integer" in bad.json()["error"]
    many = state.decode(np.repeat(z, 4000, 0), draw_seed=0)  # (4000, 1, 8, 8), each row its own draw
    assert set(np.unique(many)) <= {0.0, 1.0}
    np.testing.assert_allclose(many.mean(0), state.decode(z)[0], atol=0.04)  # 4.5 standard errors of 4,000 draws


def test_decode_cache_gives_the_same_answer(state):
    z = np.linspace(-1, 1, 20, dtype=np.float32)[None]
    first = state.decode(z)
    assert z.round(4).tobytes() in state._cache
    np.testing.assert_array_equal(state.decode(z), first)


def test_interpolation_has_the_frames_asked_for(client, state):
    r = client.post("/api/interpolate", json={"i": 3, "j": 7, "steps": 6}).json()
    assert len(r["frames"]) == 6 and len(r["ends"]) == 2
    start = state.decode(state.means[3:4])[0]  # the first frame decodes item 3's own mean
    np.testing.assert_array_equal(_pixels(r["frames"][0], (1, 8, 8)),
                                  (np.clip(start, 0, 1) * 255 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(_pixels(r["ends"][0], (1, 8, 8)),
                                  (state.test.as_float()[3] * 255 + 0.5).astype(np.uint8))


def test_anomaly_extremes_are_the_highest_and_lowest_scores(info, state):
    most = [x["score"] for x in info["most_anomalous"]]
    least = [x["score"] for x in info["least_anomalous"]]
    assert len(most) == len(least) == 8
    assert most == sorted(most, reverse=True) and least == sorted(least)
    assert most[0] == pytest.approx(state.scores.max(), abs=1e-3) and least[0] == pytest.approx(state.scores.min(), abs=1e-3)


def test_page_files_and_run_files_only_by_fixed_name(client):
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert "canvas" in client.get("/").text and client.get("/explore.js").status_code == 200
    assert client.get("/run/report.html").status_code == 200
    assert client.get("/run/curves.png").headers["content-type"] == "image/png"
    for path in ("/run/config.json", "/run/model.safetensors", "/run/..%2Fconfig.json", "/run/%2Fetc%2Fpasswd",
                 "/static/../../config.json", "/explore.js/../../api.py", "/index.html"):
        assert client.get(path).status_code == 404, path


N = 20
GOOD = [0.0] * N
BAD_DECODES = [
    ('{"z": [0.0, 0.0]}', 422, "latent_dim = 20"),
    (json.dumps({"z": GOOD + [0.0]}), 422, "latent_dim = 20"),
    ('{"z": [NaN' + ", 0" * (N - 1) + "]}", 422, "finite"),
    ('{"z": [Infinity' + ", 0" * (N - 1) + "]}", 422, "finite"),
    ('{"z": [1e400' + ", 0" * (N - 1) + "]}", 422, "finite"),
    ('{"z": [' + "9" * 400 + ", 0" * (N - 1) + "]}", 422, "finite"),
    (json.dumps({"z": [11.0] + GOOD[1:]}), 422, "within +-10"),
    (json.dumps({"z": ["1"] + GOOD[1:]}), 422, "numbers"),
    (json.dumps({"z": [True] + GOOD[1:]}), 422, "numbers"),
    (json.dumps({"z": [None] + GOOD[1:]}), 422, "numbers"),
    (json.dumps({"z": []}), 422, "list of 20"),
    (json.dumps({"z": "0"}), 422, "list of 20"),
    (json.dumps({}), 422, "list of 20"),
    (json.dumps({"z": [GOOD, [0.0]]}), 422, "latent_dim = 20"),
    (json.dumps({"z": [[GOOD]]}), 422, "latent_dim = 20"),
    (json.dumps({"z": [GOOD] * (MAX_CODES + 1)}), 422, "at most 64 codes"),
    ('{"z": [0, 0', 400, "not valid JSON"),
    ("", 400, "not valid JSON"),
    ("\xff\xfe", 400, "not valid JSON"),
    ("[" * 100_000, 413, "over"),
    ("[" * 30_000, 400, "not valid JSON"),  # nested past the recursion limit
    ("[1, 2]", 400, "JSON object"),
    (json.dumps({"z": GOOD, "pad": "x" * MAX_BODY}), 413, "over 65536 bytes"),
    (json.dumps({"z": GOOD, "draw": "yes"}), 422, "draw must be true or false"),
    (json.dumps({"z": GOOD, "draw": 1}), 422, "draw must be true or false"),
    (json.dumps({"z": GOOD, "draw": True, "seed": -1}), 422, "seed must be an integer"),
    (json.dumps({"z": GOOD, "draw": True, "seed": 2**31}), 422, "seed must be an integer"),
    (json.dumps({"z": GOOD, "draw": True, "seed": 2.5}), 422, "seed must be an integer"),
    (json.dumps({"z": GOOD, "draw": True, "seed": True}), 422, "seed must be an integer"),
]


@pytest.mark.parametrize("body, status, message", BAD_DECODES)
def test_bad_decode_requests_get_a_4xx_with_a_short_message(client, body, status, message):
    r = client.post("/api/decode", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"] and len(r.json()["error"]) < 120


@pytest.mark.parametrize("body, message", [
    ({"i": -1, "j": 0}, "i must be"), ({"i": 0, "j": 180}, "j must be"), ({"i": 0.0, "j": 1}, "i must be"),
    ({"i": "0", "j": 1}, "i must be"), ({"i": True, "j": 1}, "i must be"), ({"j": 1}, "i must be"),
    ({"i": 0, "j": 1, "steps": 1}, "steps"), ({"i": 0, "j": 1, "steps": MAX_STEPS + 1}, "steps"),
    ({"i": 0, "j": 1, "steps": 2.5}, "steps"), ({"i": 10 ** 30, "j": 1}, "i must be"),
])
def test_bad_interpolations_get_422(client, body, message):
    r = client.post("/api/interpolate", json=body)
    assert r.status_code == 422 and message in r.json()["error"]


def test_lying_content_length_and_wrong_methods(client):
    big = client.post("/api/decode", content=b"{}", headers={"content-length": "999999999"})
    assert big.status_code == 413
    assert client.get("/api/decode").status_code == 405
    assert client.post("/api/info").status_code == 405
    assert client.post("/api/decode", json={"z": GOOD}).status_code == 200  # still serving


def test_table_runs_decode_to_feature_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * [1, 10, 100, 1, 1] + [0, 50, 500, 0, 0]
    lines = ["a,b,c,d,e,label"] + [",".join(f"{v:.4f}" for v in row) + f",{i % 3}" for i, row in enumerate(x)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    vaekit.train(dataset=f"csv:{tmp_path / 't.csv'}", epochs=3, latent_dim=3, hidden=(16,), run_dir=run,
                 progress=False, pictures=False)
    client = TestClient(build_app(RunState(run)))
    info = client.get("/api/info").json()
    assert info["kind"] == "table" and info["features"] == ["a", "b", "c", "d", "e"]
    rows = client.post("/api/decode", json={"z": [[0.0, 0.0, 0.0]]}).json()["items"]
    assert len(rows) == 1 and len(rows[0]) == 5
    assert 100 < rows[0][2] < 900  # feature c in its own units (mean 500), not standardised
    frames = client.post("/api/interpolate", json={"i": 0, "j": 1, "steps": 4}).json()
    assert len(frames["frames"]) == 4 and len(frames["ends"][0]) == 5


def test_a_taken_port_is_one_clear_error():
    with bind("127.0.0.1", 0) as taken:
        with pytest.raises(VaekitError, match="cannot listen on 127.0.0.1:"):
            bind("127.0.0.1", taken.getsockname()[1])


def test_cli_serves_until_ctrl_c_then_exits_0(digits_run):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(vaekit.__file__).parents[1]),
                                                          os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", str(digits_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and "stopped" in out


def test_cli_explore_of_a_missing_run_is_one_line(capsys):
    from vaekit.cli import main

    assert main(["explore", "/nonexistent/run", "--port", "0"]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_model_of_labels_decodes_a_chosen_class(tmp_path, client):
    """An M2 run: /api/decode takes a class; other models answer 400 to one, and a bad class gets 422."""
    import vaekit

    run = tmp_path / "m2"
    vaekit.train(dataset="digits", model="m2", labels=50, epochs=5, run_dir=run, progress=False, pictures=False)
    m2 = TestClient(build_app(RunState(run)))
    info = m2.get("/api/info").json()
    assert info["conditional_classes"] == 10 and info["conditional_class_names"] == [str(k) for k in range(10)]
    z = [[0.0] * 20]
    threes = _pixels(m2.post("/api/decode", json={"z": z, "class": 3}).json()["items"][0], (1, 8, 8))
    sevens = _pixels(m2.post("/api/decode", json={"z": z, "class": 7}).json()["items"][0], (1, 8, 8))
    mixture = _pixels(m2.post("/api/decode", json={"z": z}).json()["items"][0], (1, 8, 8))
    assert np.abs(threes.astype(int) - sevens).mean() > 10 and (mixture != threes).any()
    for bad in (10, -1, "3", True, 2.5):
        answer = m2.post("/api/decode", json={"z": z, "class": bad})
        assert answer.status_code == 422 and "class must be an integer in 0..9" in answer.json()["error"]
    drawn = m2.post("/api/decode", json={"z": z, "class": 3, "draw": True, "seed": 4}).json()["items"][0]
    assert set(np.unique(_pixels(drawn, (1, 8, 8)))) <= {0, 255}  # class 3's pixels, drawn
    assert drawn == m2.post("/api/decode", json={"z": z, "class": 3, "draw": True, "seed": 4}).json()["items"][0]
    answer = client.post("/api/decode", json={"z": z, "class": 3})  # the digits VAE: no classes to decode
    assert answer.status_code == 400 and "does not decode by class" in answer.json()["error"]


def test_a_model_fitted_in_python_is_explored_on_the_items_given(tmp_path, capsys):
    """An estimator fitted on a DataFrame and saved has no test split of its own: `vaekit explore` says so in one
    line (exit 2) and serves it on ``--input`` items, tables shown with the DataFrame's column names."""
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_digits

    from vaekit.cli import main

    X = load_digits().data / 16.0
    columns = [f"px{k}" for k in range(64)]
    vae = vaekit.VAE(epochs=3, random_state=0, device="cpu").fit(pd.DataFrame(X[:1000], columns=columns))
    folder = vae.save(tmp_path / "fitted")
    np.save(tmp_path / "items.npy", X[1000:1200].astype(np.float32))
    capsys.readouterr()
    assert main(["explore", str(folder), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no test split of its own" in err and "--input" in err and err.count("\n") == 1
    shown = RunState(folder, data=f"npy:{tmp_path / 'items.npy'}")
    assert shown.latent_means().shape == (200, vae.latent_dim_) and shown.feature_names() == columns
    with TestClient(build_app(shown)) as client:
        info = client.get("/api/info").json()
        assert info["features"] == columns and len(info["points"]) == 200
        assert info["items"] == f"items of npy:{tmp_path / 'items.npy'}"
        decoded = client.post("/api/decode", json={"z": [[0.0] * vae.latent_dim_]})
        assert decoded.status_code == 200


def test_a_model_of_labels_fitted_on_names_offers_them_to_decode(tmp_path):
    """An M2 estimator fitted on class names ("zero" .. "nine") and explored on given items: the page's decode-by-class
    choices are its classes by name, in its class order, and a chosen class decodes; a CLI run's are the data's."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    words = np.array("zero one two three four five six seven eight nine".split(), dtype=object)
    named = np.full(len(y), -1, dtype=object)
    named[:300] = words[y[:300]]
    clf = vaekit.SemiSupervisedVAE(epochs=3, random_state=0, device="cpu").fit(X, named)
    folder = clf.save(tmp_path / "m2")
    np.save(tmp_path / "items.npy", X[1500:].astype(np.float32))
    with TestClient(build_app(RunState(folder, data=f"npy:{tmp_path / 'items.npy'}"))) as client:
        info = client.get("/api/info").json()
        assert info["conditional_class_names"] == sorted(words.tolist()) == clf.classes_.tolist()
        three = info["conditional_class_names"].index("three")
        decoded = client.post("/api/decode", json={"z": [[0.0] * clf.latent_dim_], "class": three})
        assert decoded.status_code == 200
