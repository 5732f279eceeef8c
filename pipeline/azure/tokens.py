"""A SAS token that is built once and renewed before it expires.

Responsible for: caching a `pipeline.azure.sas.generate_token` result for its lifetime minus a margin,
so a busy client signs once an hour instead of once a request.
Not responsible for: the token format (see `pipeline.azure.sas`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pipeline.azure.sas import generate_token
from pipeline.domain.keys import SecretKey


class CachedSasToken:
    """Callable returning a valid `SharedAccessSignature ...` for `resource`; repr hides the key."""

    def __init__(
        self,
        resource: str,
        key: SecretKey,
        *,
        policy: str | None,
        ttl: int = 3600,
        renew_before: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if renew_before >= ttl:
            raise ValueError("renew_before must be shorter than ttl")
        self.resource = resource
        self._key = key
        self._policy = policy
        self._ttl = ttl
        self._renew_before = renew_before
        self._clock = clock
        self._token: str | None = None
        self._expiry = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expiry - self._renew_before:
                self._expiry = int(now) + self._ttl
                self._token = generate_token(
                    self.resource, self._key, expiry=self._expiry, policy=self._policy
                )
            return self._token

    @property
    def expiry(self) -> int:
        """Unix time at which the current token expires (0 before the first call)."""
        return self._expiry

    def __repr__(self) -> str:
        return f"CachedSasToken(resource={self.resource!r}, policy={self._policy!r}, key=<hidden>)"
