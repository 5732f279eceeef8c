"""Serve the web app with uvicorn (the only module importing it) until SIGINT/SIGTERM."""

from __future__ import annotations

import uvicorn

from pipeline.crypto.site_signing import SiteSigner
from pipeline.db.session import Database
from pipeline.web.app import create_app


def parse_listen(text: str, what: str = "--listen") -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT) into its parts; a bad value is a one-line ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def serve(db: Database, *, host: str, port: int, stuck_seconds: float, signer: SiteSigner | None) -> None:
    """Run the app on HOST:PORT in this thread until a signal stops uvicorn."""
    app = create_app(db, stuck_seconds=stuck_seconds, signer=signer)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run()
