"""Reads a server's clock from the HTTP `Date` header (for `edgeline doctor`'s clock-skew check).

Why: SAS tokens carry an expiry time; with a clock far off, DPS and IoT Hub refuse valid tokens (or
accept expired ones), and the error says "unauthorized", not "clock".
Not responsible for: deciding what skew is too much (pipeline.doctor).
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx


def base_url(host_name: str) -> str:
    """The HTTPS (or given-scheme, e.g. the emulator's http://) URL of a connection string's HostName."""
    return host_name if "://" in host_name else f"https://{host_name}"


def server_time(url: str, timeout: float = 5.0) -> datetime | None:
    """The time in the `Date` header of a GET to `url` (any status), or None if there is none.

    Raises OSError-like httpx errors as `ConnectionError` with a short reason.
    """
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
    header = response.headers.get("date")
    if not header:
        return None
    try:
        return parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
