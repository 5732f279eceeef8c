"""The HTTP layer shared by the DPS adapters: one httpx client, pacing, retries, error mapping.

Responsible for: addressing (HostName → base URL), sending a request through a token bucket, retrying
429/5xx/timeouts/connection errors with backoff honouring `Retry-After`, and turning every failure into
`AzureError` with the DPS `errorCode` (azure-notes §1.7).
Not responsible for: authentication (callers pass the Authorization value) or the meaning of bodies.
The only module besides the DPS adapters that imports httpx; no key ever reaches a message built here.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx

from pipeline import metrics
from pipeline.azure.pacing import Backoff, Sleep, TokenBucket, parse_retry_after
from pipeline.azure.ports import AzureError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def base_url_for_host(host_name: str) -> str:
    """Turn a connection string's HostName into a base URL.

    `mydps.azure-devices-provisioning.net` → `https://mydps...`; a HostName that already carries a
    scheme (the emulator's `http://127.0.0.1:PORT`, azure-notes §9) is used as-is, without a trailing `/`.
    """
    host = host_name.strip()
    if not host:
        raise ValueError("HostName is empty")
    if "://" in host:
        return host.rstrip("/")
    return f"https://{host}".rstrip("/")


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are transient (as the C# service client decides, azure-notes §1.7); 408 too."""
    return status in RETRYABLE_STATUSES or status >= 500


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, *, what: str) -> AzureError:
    """Build an AzureError from a DPS error body (ProvisioningServiceErrorDetails) or `x-ms-error-code`."""
    details = _json_object(body)
    code = _int_or_none(details.get("errorCode"))
    if code is None:
        code = _int_or_none(headers.get("x-ms-error-code"))
    message = details.get("message") or details.get("Message") or _reason(status)
    tracking = details.get("trackingId")
    text = f"{what}: HTTP {status}" + (f" errorCode {code}" if code is not None else "") + f": {message}"
    if tracking:
        text += f" (trackingId {tracking})"
    return AzureError(
        text,
        status=status,
        error_code=code,
        retryable=is_retryable_status(status),
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _reason(status: int) -> str:
    try:
        return httpx.codes.get_reason_phrase(status) or "error"
    except ValueError:
        return "error"


class AzureHttp:
    """Send requests to one base URL with pacing, bounded retries and AzureError mapping."""

    def __init__(
        self,
        base_url: str,
        *,
        pacer: TokenBucket | None = None,
        backoff: Backoff | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        sleep: Sleep | None = None,
        rng: Callable[[float, float], float] = random.uniform,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._pacer = pacer
        self._backoff = backoff or Backoff()
        self._sleep: Sleep = sleep if sleep is not None else time.sleep
        self._rng = rng
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            verify=verify,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        auth: Callable[[], str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        allow: Collection[int] = (),
    ) -> httpx.Response:
        """Send, retrying transient failures; return a 2xx response or one whose status is in `allow`."""
        retry = 0
        while True:
            try:
                return self._attempt(
                    method,
                    path,
                    what=what,
                    auth=auth,
                    params=params,
                    json_body=json_body,
                    content=content,
                    headers=headers,
                    allow=allow,
                )
            except AzureError as exc:
                if not exc.retryable or retry + 1 >= self._backoff.max_attempts:
                    raise
                wait = self._backoff.delay(retry, retry_after=exc.retry_after, rng=self._rng)
                log.info(
                    "%s failed (%s); retry %d in %.2fs", what, exc.status or "no response", retry + 1, wait
                )
                metrics.current().retry("dps")
                self._sleep(wait)
                retry += 1

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        what: str,
        auth: Callable[[], str] | None,
        params: Mapping[str, str] | None,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        allow: Collection[int],
    ) -> httpx.Response:
        if self._pacer is not None:
            self._pacer.acquire()
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = auth()
        try:
            response = self._client.request(
                method, path, params=params, json=json_body, content=content, headers=all_headers
            )
        except httpx.TimeoutException as exc:
            raise AzureError(f"{what}: timed out ({type(exc).__name__})", retryable=True) from None
        except httpx.TransportError as exc:
            raise AzureError(
                f"{what}: connection failed ({type(exc).__name__}: {exc})", retryable=True
            ) from None
        metrics.current().dps_operation(method, response.status_code)
        if response.is_success or response.status_code in allow:
            return response
        raise error_from_response(response.status_code, response.headers, response.content, what=what)
