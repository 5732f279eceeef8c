"""A small MES stand-in that answers approval webhooks by rules: for the demo and the tests.

Rules are keyed by serial number and can change while it runs: deny with a reason, answer slowly,
answer garbage, or be "down" (HTTP 503). Everything else is allowed. It records every request.
Not a real MES and not for production.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StubRules:
    """How the stub answers; mutate between requests (guarded by the server's lock)."""

    deny: dict[str, str] = field(default_factory=dict)  # serial -> reason
    delay_seconds: dict[str, float] = field(default_factory=dict)  # serial -> seconds before answering
    malformed: set[str] = field(default_factory=set)  # serials that get a broken answer
    tags: dict[str, str] = field(default_factory=dict)  # extra tags for every allowed unit
    down: bool = False  # answer 503 to everything


class StubMes:
    """`with StubMes() as mes: mes.url` serves approvals on 127.0.0.1 on a free port."""

    def __init__(self, rules: StubRules | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.rules = rules or StubRules()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-mes", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/approve"

    def __enter__(self) -> StubMes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, request: dict[str, Any]) -> tuple[int, bytes]:
        """The status and body for one approval request."""
        serial = str(request.get("serial", ""))
        with self.lock:
            self.requests.append(request)
            rules = self.rules
            delay = rules.delay_seconds.get(serial, 0.0)
        time.sleep(delay)
        with self.lock:
            if rules.down:
                return 503, b'{"error": "MES maintenance"}'
            if serial in rules.malformed:
                return 200, b'{"decision": "maybe"'
            if serial in rules.deny:
                return 200, json.dumps({"decision": "deny", "reason": rules.deny[serial]}).encode()
            return 200, json.dumps(
                {"decision": "allow", "reason": "released by stub MES", "tags": rules.tags}
            ).encode()


def _handler_for(mes: StubMes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
            try:
                request = json.loads(self.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError):
                request = {}
            status, body = mes.answer(request if isinstance(request, dict) else {})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and demo own the output
            return

    return Handler
