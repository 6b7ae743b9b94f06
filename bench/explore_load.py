"""Load test of `vaekit explore` on 127.0.0.1: a benchmark, not a unit test.

    python bench/explore_load.py                       # trains a small digits run first (seconds)
    python bench/explore_load.py --run runs/mnist-...  # or any run folder
    python bench/explore_load.py --dataset mnist --data-dir ../shared/data/mnist

Starts the server as its own process (`python -m vaekit explore RUN --port 0`), then:
1. 2,000 decode requests of fresh random codes (no cache hits: a drag never repeats a point) from 16
   concurrent clients, each on one keep-alive connection: p50 / p90 / p99 latency, throughput, errors;
2. 200 malformed requests of 12 kinds (wrong length, NaN, infinities, out of bounds, wrong types, bad
   JSON, an oversize body, bad item indices, bad steps, wrong method, unknown path): every one must be 4xx;
3. one good request afterwards: the server still serves.
Writes bench/results/explore_load.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def start_server(run: Path) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # "explore RUN at http://127.0.0.1:PORT/  (Ctrl-C stops)"
    if " at http://" not in line:
        proc.kill()
        sys.exit(f"the server did not start: {line!r}")
    host, port = line.split(" at http://")[1].split("/")[0].split(":")
    return proc, host, int(port)


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def decode_load(host: str, port: int, latent_dim: int, total: int, clients: int) -> dict:
    per_client = total // clients

    def client(seed: int) -> tuple[list[float], int]:
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        latencies, errors = [], 0
        for _ in range(per_client):
            body = json.dumps({"z": rng.normal(size=latent_dim).round(4).tolist()}).encode()
            started = time.perf_counter()
            try:
                ok = request(conn, "POST", "/api/decode", body) == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            latencies.append(time.perf_counter() - started)
            errors += not ok
        conn.close()
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    ms = np.array([t for lat, _ in results for t in lat]) * 1000
    return {"requests": int(len(ms)), "clients": clients, "errors": int(sum(e for _, e in results)),
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "wall_s": wall,
            "requests_per_s": len(ms) / wall}


def malformed_requests(latent_dim: int, n_test: int) -> list[tuple[str, str, str, bytes | None]]:
    """(kind, method, path, body) for 12 kinds of bad request."""
    good = [0.0] * latent_dim

    def z(value) -> bytes:
        return json.dumps({"z": value}).encode()

    kinds = [
        ("wrong length", "POST", "/api/decode", z(good + [0.0])),
        ("NaN", "POST", "/api/decode", b'{"z": [NaN' + b", 0" * (latent_dim - 1) + b"]}"),
        ("infinity", "POST", "/api/decode", b'{"z": [1e999' + b", 0" * (latent_dim - 1) + b"]}"),
        ("huge value", "POST", "/api/decode", z([1e6] + good[1:])),
        ("wrong type", "POST", "/api/decode", z(["a"] * latent_dim)),
        ("bad JSON", "POST", "/api/decode", b'{"z": [0, 0'),
        ("not an object", "POST", "/api/decode", b"[1, 2, 3]"),
        ("oversize body", "POST", "/api/decode", z(good)[:-1] + b', "pad": "' + b"x" * 70_000 + b'"}'),
        ("bad item index", "POST", "/api/interpolate", json.dumps({"i": -1, "j": n_test}).encode()),
        ("bad steps", "POST", "/api/interpolate", json.dumps({"i": 0, "j": 1, "steps": 10 ** 9}).encode()),
        ("wrong method", "GET", "/api/decode", None),
        ("unknown path", "GET", "/../../etc/passwd", None),
    ]
    return [kinds[k % len(kinds)] for k in range(200)]


def malformed_load(host: str, port: int, cases: list, clients: int) -> dict:
    def send(case) -> tuple[str, int]:
        kind, method, path, body = case
        conn = http.client.HTTPConnection(host, port, timeout=30)  # a fresh connection: a 413 may close it
        try:
            return kind, request(conn, method, path, body)
        except (OSError, http.client.HTTPException):
            return kind, 0
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, cases))
    by_kind: dict[str, list[int]] = {}
    for kind, status in answers:
        by_kind.setdefault(kind, []).append(status)
    return {"requests": len(answers), "all_4xx": all(400 <= s < 500 for _, s in answers),
            "not_4xx": sum(not 400 <= s < 500 for _, s in answers),
            "statuses": {k: sorted(set(v)) for k, v in by_kind.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train one on --dataset)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import vaekit

    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="explore-load-")) / "run"
        vaekit.train(dataset=args.dataset, data_dir=args.data_dir, epochs=5, run_dir=run, progress=False,
                     pictures=False)
    cfg = vaekit.api.read_config(run)
    n_test = len(vaekit.api.input_data(run))
    proc, host, port = start_server(run)
    try:
        decode = decode_load(host, port, cfg.model.latent_dim, args.requests, args.clients)
        print(f"decode: {decode['requests']} requests from {decode['clients']} clients: p50 {decode['p50_ms']:.2f} ms, "
              f"p99 {decode['p99_ms']:.2f} ms, {decode['requests_per_s']:.0f} req/s, {decode['errors']} errors")
        bad = malformed_load(host, port, malformed_requests(cfg.model.latent_dim, n_test), args.clients)
        print(f"malformed: {bad['requests']} requests, all 4xx: {bad['all_4xx']}  {bad['statuses']}")
        conn = http.client.HTTPConnection(host, port, timeout=30)
        after = request(conn, "POST", "/api/decode", json.dumps({"z": [0.0] * cfg.model.latent_dim}).encode())
        conn.close()
        print(f"a good request afterwards: HTTP {after}")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    result = {"run": {"dataset": cfg.data.dataset, "latent_dim": cfg.model.latent_dim, "arch": cfg.model.arch,
                      "hidden": list(cfg.model.hidden), "item_shape": list(cfg.model.input_shape)},
              "decode": decode, "malformed": bad, "good_request_after": after, "server_exit_code_on_ctrl_c": code,
              "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}}
    out = ROOT / "bench" / "results" / "explore_load.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if decode["errors"] or not bad["all_4xx"] or after != 200:
        sys.exit(1)


if __name__ == "__main__":
    main()
