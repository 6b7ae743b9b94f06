"""The explorer's ASGI app (Starlette): one page, its two static files, and a small JSON API.

Every request is checked at this edge: bodies are capped (413), JSON must parse (400), and codes, item
indices and step counts must have the right type, length, finiteness and bounds (422), each with a one-line
``{"error": ...}``. No route takes a path to the filesystem: the page's files are a fixed set in the package's
``static/`` folder and the run's files a fixed set of names (``RunState.run_files``).
"""
from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .state import MAX_SLIDERS, RunState

STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"/": ("index.html", "text/html"), "/explore.js": ("explore.js", "text/javascript"),
              "/explore.css": ("explore.css", "text/css")}
MAX_BODY = 64 * 1024  # bytes: 64 codes of 32 dims as JSON fit in ~25 KiB
MAX_CODES = 64  # codes per decode request
MAX_STEPS = 32  # interpolation frames
N_EXTREMES = 8  # most / least anomalous items shown


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _json_body(request: Request) -> dict:
    """The request's JSON object, read at most MAX_BODY bytes (a lying or absent Content-Length changes nothing)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    return data


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(422, "latent values must be numbers")
    try:
        x = float(v)
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not math.isfinite(x):
        raise BadRequest(422, "latent values must be finite")
    return x


def _codes(state: RunState, value) -> np.ndarray:
    """``z``: one code (a list of L numbers) or a list of up to MAX_CODES codes -> (B, L) float32."""
    if not isinstance(value, list) or not value:
        raise BadRequest(422, f"z must be a list of {state.latent_dim} numbers or a list of such lists")
    rows = value if isinstance(value[0], list) else [value]
    if len(rows) > MAX_CODES:
        raise BadRequest(422, f"at most {MAX_CODES} codes per request, got {len(rows)}")
    for row in rows:
        if not isinstance(row, list) or len(row) != state.latent_dim:
            raise BadRequest(422, f"each code must have latent_dim = {state.latent_dim} numbers")
    z = np.array([[_number(v) for v in row] for row in rows], np.float32)
    if np.abs(z).max() > state.z_bound:
        raise BadRequest(422, f"latent values must be within +-{state.z_bound:g}")
    return z


def _index(state: RunState, value, name: str) -> int:
    n = len(state.means)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise BadRequest(422, f"{name} must be a test item index in 0..{n - 1}")
    return value


def _draw_seed(body: dict) -> int | None:
    """``"draw": true`` with an optional ``"seed"`` (default 0): the seed of values drawn from p(x | z); None
    without ``draw`` (the likelihood's mean)."""
    draw, seed = body.get("draw", False), body.get("seed", 0)
    if not isinstance(draw, bool):
        raise BadRequest(422, "draw must be true or false")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise BadRequest(422, "seed must be an integer in 0..2147483647")
    return seed if draw else None


def _encode(state: RunState, items: np.ndarray) -> list:
    """Images as base64 of uint8 (C, H, W) bytes; table rows as lists of numbers (5 significant digits)."""
    if state.is_image:
        pixels = (np.clip(items, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return [base64.b64encode(p.tobytes()).decode() for p in pixels]
    return [[float(f"{v:.5g}") for v in row] for row in items.reshape(len(items), -1)]


def _finite(value):
    """JSON allows no NaN: summary numbers that are NaN (e.g. a standard error of one item) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _info(state: RunState) -> dict:
    """Everything the page needs once: the scatter, the map back to z, the sliders, the extremes, the metrics."""
    most, least = state.anomaly_extremes(N_EXTREMES)
    labels = state.test.y

    def extreme(i: int) -> dict:
        return {"index": i, "score": round(float(state.scores[i]), 3),
                "label": None if labels is None else int(labels[i]), "item": _encode(state, state.item(i)[None])[0]}

    order = state.kl_order()
    return _finite({
        "run": state.run_dir.name, "dataset": state.cfg.data.dataset, "model": state.cfg.model.model,
        "kind": "image" if state.is_image else "table", "item_shape": list(state.cfg.model.input_shape),
        "features": None if state.is_image else state.feature_names(),
        "latent_dim": state.latent_dim, "z_bound": state.z_bound, "items": state.items_name,
        "points": np.round(state.points.astype(np.float64), 4).tolist(), "labels": None if labels is None else labels.tolist(),
        "class_names": state.class_names(), "axis_names": state.axis_names,
        "conditional_classes": state.conditional_classes, "conditional_class_names": state.conditional_class_names,
        "approximate_mean": state.approximate_mean,
        "center": state.center.tolist(), "axes": state.axes.tolist(),
        "dims": order, "dim_use": [round(float(state.dim_use[d]), 4) for d in order], "use_name": state.use_name,
        "dim_range": [[round(lo, 2), round(hi, 2)] for lo, hi in state.slider_ranges()],
        "max_sliders": MAX_SLIDERS, "max_steps": MAX_STEPS, "score_name": "-log p(x | z = mean) (nats)",
        "most_anomalous": [extreme(i) for i in most], "least_anomalous": [extreme(i) for i in least],
        "metrics": state.metrics(), "files": sorted(state.run_files()),
    })


def build_app(state: RunState) -> Starlette:
    """The explorer for one loaded run."""
    info_body = json.dumps(_info(state)).encode()  # fixed for the server's life: built once
    files = state.run_files()

    def page(request: Request) -> Response:
        name, media = PAGE_FILES[request.url.path]
        return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-cache"})

    def info(request: Request) -> Response:
        return Response(info_body, media_type="application/json")

    async def decode(request: Request) -> JSONResponse:
        body = await _json_body(request)
        z = _codes(state, body.get("z"))
        label = body.get("class")
        if label is not None:
            if not state.conditional_classes:
                raise BadRequest(400, "class: this model does not decode by class (only one trained on labels does)")
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < state.conditional_classes:
                raise BadRequest(422, f"class must be an integer in 0..{state.conditional_classes - 1}")
        return JSONResponse({"items": _encode(state, state.decode(z, label, _draw_seed(body)))})

    async def interpolate(request: Request) -> JSONResponse:
        body = await _json_body(request)
        i, j = _index(state, body.get("i"), "i"), _index(state, body.get("j"), "j")
        steps = body.get("steps", 10)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
            raise BadRequest(422, f"steps must be an integer in 2..{MAX_STEPS}")
        originals = np.stack([state.item(i), state.item(j)])
        return JSONResponse({"frames": _encode(state, state.interpolate(i, j, steps, _draw_seed(body))),
                             "ends": _encode(state, originals)})

    def run_file(request: Request) -> Response:
        path = files.get(request.path_params["name"])  # a lookup in a fixed dict, never a path join
        if path is None:
            return JSONResponse({"error": "no such file in this run"}, status_code=404)
        return FileResponse(path)

    routes = [Route(p, page) for p in PAGE_FILES]
    routes += [Route("/api/info", info), Route("/api/decode", decode, methods=["POST"]),
               Route("/api/interpolate", interpolate, methods=["POST"]), Route("/run/{name}", run_file)]
    return Starlette(routes=routes, exception_handlers={BadRequest: _error})
