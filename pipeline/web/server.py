"""Serve the web app with uvicorn (the only module importing it) until SIGINT/SIGTERM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from pipeline.crypto.site_signing import SiteSigner
from pipeline.db.api_tokens import create_token
from pipeline.db.session import Database
from pipeline.web.app import create_app


def parse_listen(text: str, what: str = "--listen", *, any_port: bool = False) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT) into its parts; port 0 (any free one) only if `any_port`."""
    host, sep, port = text.strip().rpartition(":")
    lowest = 0 if any_port else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ValueError(f"{what} {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def serve(db: Database, *, host: str, port: int, stuck_seconds: float, signer: SiteSigner | None) -> None:
    """Run the app on HOST:PORT in this thread until a signal stops uvicorn."""
    app = create_app(db, stuck_seconds=stuck_seconds, signer=signer)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run()


@contextmanager
def dashboard_in_background(
    db_url: str, *, host: str, port: int, stuck_seconds: float, announce: Callable[[str], None]
) -> Iterator[str]:
    """Serve the app from a thread for the duration of the block; announce its `?token=` link.

    The token (role auditor, named "demo") is created in that database; the link carries it once.
    """
    db = Database(db_url)
    _, token = create_token(db, name="demo", role="auditor")
    app = create_app(db, stuck_seconds=stuck_seconds, signer=None)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="edgeline-web", daemon=True)
    thread.start()  # uvicorn leaves signal handling to the main thread when run from another one
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        db.dispose()
        raise OSError(f"the dashboard could not listen on {host}:{port} (port in use?)")
    port = port or _bound_port(server)
    url = f"http://{host}:{port}/?token={token}"
    announce(url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


def _bound_port(server: uvicorn.Server) -> int:
    """The port the OS chose for a server started on port 0."""
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise OSError("the dashboard server has no listening socket")
