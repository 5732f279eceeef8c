"""HTTP plumbing for the emulator: requests, responses, a regex router and a threaded HTTP/1.1 server.

Responsible for: framing (Content-Length bodies, keep-alive), dispatching to route handlers, turning
`ApiError` into an error body via a per-server renderer, bounded request sizes, and closing every
connection on shutdown so a stopped emulator frees its port at once.
Not responsible for: what any route means (service_api, device_api, hub_api, control_api do that).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.emulator.wire import ApiError, bad_request

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # DPS caps messages at 96 KB (azure-notes §3); leave room, but stay bounded


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """Decode the body as JSON; `None` for an empty body; 400 if malformed."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad_request("Request body is not valid JSON.") from None


@dataclass(slots=True)
class Response:
    """A JSON response; `body=None` sends no body and no Content-Type (as DPS's 204)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class DropConnection(Exception):
    """Raised by a fault injector: close the socket without answering."""


Handler = Callable[[Request], Response]
ErrorRenderer = Callable[[ApiError], Response]


class Router:
    """Method + path-regex table; named groups become `Request.params`."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Find the handler for a request; 404 or 405 as ApiError otherwise."""
        path_matched = False
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            path_matched = True
            if route_method == method:
                return handler, match.groupdict()
        if path_matched:
            raise ApiError(405, 405000, f"Method {method} is not allowed on this path.")
        raise ApiError(404, 404000, "No such resource path.")


@dataclass(slots=True)
class App:
    """What a server serves: a router, an error renderer, and hooks run before every request."""

    router: Router
    render_error: ErrorRenderer
    before: list[Callable[[Request], None]] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        try:
            handler, params = self.router.resolve(request.method, request.path)
            bound = Request(
                request.method, request.path, request.query, request.headers, request.body, params
            )
            for hook in self.before:
                hook(bound)
            return handler(bound)
        except ApiError as exc:
            response = self.render_error(exc)
            response.headers.update(exc.headers)
            return response


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgeline-emulator/1"
    timeout = 60  # idle keep-alive connections are closed after this
    # Headers and body in one segment with Nagle off: otherwise delayed ACKs add ~40 ms per request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # here, on the connection's thread, not in the accept loop
        super().setup()

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _read_request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, 413000, "Request body too large.")
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        return Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )

    def _serve(self) -> None:
        try:
            response = self.server.app.handle(self._read_request())
        except ApiError as exc:
            response = self.server.app.render_error(exc)
        except DropConnection:
            self.close_connection = True
            return
        except Exception:
            log.exception("emulator route failed: %s %s", self.command, urlsplit(self.path).path)
            response = self.server.app.render_error(ApiError(500, 500000, "Internal emulator error."))
        self._write(response)

    def _write(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server that tracks its connections so `close()` ends them all."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended abnormally", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def serve_in_background(server: EmulatorHTTPServer, name: str) -> threading.Thread:
    """Run `serve_forever` on a daemon thread and return it."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return thread
