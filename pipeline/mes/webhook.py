"""Ask the MES over HTTP: POST the unit as JSON, read a JSON decision (stdlib urllib: no new dependency).

Responsible for: one request with a timeout, an optional bearer token, and mapping every transport
outcome onto `ApprovalUnavailable` (retry may help) or `ApprovalError` (it will not).
Not responsible for: retries or policy (`pipeline.service.approving`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from pipeline.domain.approval import (
    ApprovalDecision,
    ApprovalError,
    ApprovalRequest,
    ApprovalUnavailable,
    parse_decision,
)

MAX_ANSWER_BYTES = 64 * 1024
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


class WebhookApprover:
    """POST `ApprovalRequest` JSON to a URL; the answer body is the decision."""

    def __init__(self, url: str, *, timeout: float, token: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"approval_url {url!r} must be an http:// or https:// URL")
        self.url, self.timeout, self._token = url, timeout, token

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"MES webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        body = json.dumps(request.as_json()).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        http_request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            text = f"{self.describe()} answered HTTP {exc.code}"
            raise (ApprovalUnavailable(text) if exc.code in _TRANSIENT else ApprovalError(text)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApprovalUnavailable(f"{self.describe()} unreachable ({reason})") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise ApprovalError(f"{self.describe()} answer is larger than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApprovalError(f"{self.describe()} answer is not JSON: {raw[:60]!r}") from None
        try:
            return parse_decision(answer)
        except ApprovalError as exc:
            raise ApprovalError(f"{self.describe()}: {exc}") from None
