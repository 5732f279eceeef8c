"""The shared HTTP layer: addressing, error mapping from real DPS error bodies, and retries against a
real (tiny, scripted) HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.azure.http import AzureHttp, base_url_for_host, error_from_response
from pipeline.azure.pacing import Backoff
from pipeline.azure.ports import AzureError


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], Any]


@dataclass
class ScriptedServer:
    """A real ThreadingHTTPServer answering each request with `respond(seen)`; records every request."""

    respond: Callable[[Seen], Reply]
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ScriptedServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                outer.seen.append(seen)
                status, headers, body = outer.respond(seen)
                data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                if body is not None and not isinstance(body, bytes):
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def replies(*items: Reply) -> Callable[[Seen], Reply]:
    """Answer with `items` in order, repeating the last one."""
    queue = list(items)

    def respond(_: Seen) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond


StartServer = Callable[[Callable[[Seen], Reply]], ScriptedServer]


def scripted_servers() -> Iterator[StartServer]:
    """Fixture body: yield a function starting scripted servers; stop them all afterwards."""
    servers: list[ScriptedServer] = []

    def start(respond: Callable[[Seen], Reply]) -> ScriptedServer:
        servers.append(ScriptedServer(respond).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def scripted() -> Iterator[StartServer]:
    yield from scripted_servers()


class Sleeps(list[float]):
    """Records requested sleeps instead of sleeping, so retry tests are fast."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


THROTTLED = {
    "errorCode": 429001,
    "trackingId": "t-1",
    "message": "Too many requests",
    "timestampUtc": "2026-11-30T00:00:00.0000000Z",
}


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("mydps.azure-devices-provisioning.net", "https://mydps.azure-devices-provisioning.net"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://localhost:8443", "https://localhost:8443"),
        ("localhost:8443", "https://localhost:8443"),
    ],
)
def test_base_url_for_host(host: str, url: str) -> None:
    assert base_url_for_host(host) == url


def test_error_from_a_recorded_unauthorized_body() -> None:
    body = (
        b'{"errorCode":401002,"trackingId":"ada7d102","message":"Unauthorized",'
        b'"timestampUtc":"2020-01-01T00:00:00Z"}'
    )
    error = error_from_response(401, {}, body, what="GET enrollment")
    assert (error.status, error.error_code, error.retryable) == (401, 401002, False)
    assert "401002" in str(error) and "ada7d102" in str(error)


def test_error_code_falls_back_to_the_header_and_retry_after_is_kept() -> None:
    error = error_from_response(429, {"x-ms-error-code": "429001", "retry-after": "7"}, b"", what="x")
    assert (error.error_code, error.retryable, error.retry_after) == (429001, True, 7.0)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (404, False), (409, False), (412, False), (429, True), (500, True), (503, True)],
)
def test_retryable_classes(status: int, retryable: bool) -> None:
    assert error_from_response(status, {}, b"not json", what="x").retryable is retryable


def test_429_then_success_honours_retry_after(scripted: Any) -> None:
    server = scripted(
        replies(
            (429, {"Retry-After": "3"}, THROTTLED),
            (429, {"Retry-After": "1"}, THROTTLED),
            (200, {}, {"ok": True}),
        )
    )
    sleeps = Sleeps()
    with_http = AzureHttp(server.url, sleep=sleeps)
    response = with_http.send("GET", "/x", what="test")
    with_http.close()
    assert response.json() == {"ok": True}
    assert sleeps == [3.0, 1.0]
    assert len(server.seen) == 3


def test_503_retries_with_jitter_then_gives_up_retryable(scripted: Any) -> None:
    server = scripted(replies((503, {}, {"errorCode": 503000, "message": "unavailable"})))
    sleeps = Sleeps()
    http = AzureHttp(
        server.url, sleep=sleeps, backoff=Backoff(base=0.5, cap=2.0, max_attempts=4), rng=lambda lo, hi: hi
    )
    with pytest.raises(AzureError) as caught:
        http.send("GET", "/x", what="test")
    http.close()
    assert (caught.value.status, caught.value.error_code, caught.value.retryable) == (503, 503000, True)
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(server.seen) == 4


def test_permanent_errors_are_not_retried(scripted: Any) -> None:
    server = scripted(replies((400, {}, {"errorCode": 400004, "message": "BadRequest"})))
    http = AzureHttp(server.url, sleep=Sleeps())
    with pytest.raises(AzureError) as caught:
        http.send("PUT", "/x", what="test", json_body={})
    assert caught.value.error_code == 400004 and len(server.seen) == 1


def test_allowed_statuses_are_returned_not_raised(scripted: Any) -> None:
    server = scripted(replies((404, {}, {"errorCode": 404201, "message": "not found"})))
    assert AzureHttp(server.url).send("GET", "/x", what="t", allow=(404,)).status_code == 404


def test_connection_refused_is_retryable_and_names_no_secret() -> None:
    sleeps = Sleeps()
    http = AzureHttp("http://127.0.0.1:9", sleep=sleeps, backoff=Backoff(max_attempts=2))
    with pytest.raises(AzureError) as caught:
        http.send("GET", "/x", what="test", auth=lambda: "SharedAccessSignature sr=a&sig=SECRET&se=1")
    assert caught.value.retryable and caught.value.status is None
    assert "SECRET" not in str(caught.value) and len(sleeps) == 1


def test_auth_is_computed_per_attempt_and_sent(scripted: Any) -> None:
    server = scripted(replies((500, {}, None), (200, {}, {})))
    tokens = iter(["tok-1", "tok-2"])
    AzureHttp(server.url, sleep=Sleeps()).send("GET", "/x", what="t", auth=lambda: next(tokens))
    assert [s.headers["authorization"] for s in server.seen] == ["tok-1", "tok-2"]
