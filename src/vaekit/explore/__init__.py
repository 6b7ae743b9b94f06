"""``vaekit explore RUN``: the latent space of a run as a live web page (an ASGI app on uvicorn).

The model is loaded and the test split encoded once, at start; the page (plain HTML, JS and canvas, served
from the package, no CDN) asks the server to decode the codes it points at.
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import VaekitError


def make_app(run: str | Path, data_dir: str | Path | None = None, data: str | None = None):
    """The explorer's ASGI app for a run folder (for tests, or to mount in another server): the items shown are
    its test split, read from ``data_dir`` first (as ``--data-dir``), or ``data``, any data spec (as ``--input``;
    needed for a model fitted in Python on an array, which has no split of its own)."""
    from .app import build_app
    from .state import RunState

    return build_app(RunState(run, data_dir=data_dir, data=data))


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket, bound here so that a taken port is one clear error (and port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise VaekitError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def explore(run: str | Path, host: str = "127.0.0.1", port: int = 8000, data_dir: str | Path | None = None,
            data: str | None = None) -> None:
    """Serve the explorer for ``run`` on http://host:port/ until Ctrl-C (then return normally).

    Bound to 127.0.0.1 unless ``host`` says otherwise: the page can decode but not change anything, yet
    it is meant for the person at this machine.

    Examples
    --------
    >>> vaekit.explore("runs/digits-vae-20261123-101500")  # doctest: +SKIP
    explore runs/digits-vae-20261123-101500 at http://127.0.0.1:8000/  (Ctrl-C stops)
    """
    import uvicorn

    app = make_app(run, data_dir, data)  # load first: a bad run folder fails before anything listens
    sock = bind(host, port)
    print(f"explore {run} at {url_of(sock)}  (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])  # uvicorn shuts down gracefully on Ctrl-C, then re-raises it
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("explore: stopped", flush=True)


@contextmanager
def running(run: str | Path, host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None,
            data: str | None = None) -> Iterator[str]:
    """Serve the explorer on a background thread while the ``with`` block runs; yields its URL.

    For notebooks, tests and benchmarks: ``with running(run) as url: ...``; port 0 picks a free port.
    """
    import uvicorn

    app = make_app(run, data_dir, data)
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise VaekitError("the explorer's server stopped while starting")
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
