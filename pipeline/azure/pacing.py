"""Client-side pacing and retry timing for Azure calls: pure arithmetic with an injectable clock.

Responsible for: a token bucket that keeps a client below a service rate limit (DPS: 1,000 operations/min
per unit, azure-notes §3), capped exponential backoff with full jitter, and parsing `Retry-After`.
Not responsible for: sending requests or deciding which failures are retryable (see `pipeline.azure.http`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """Allow `rate_per_minute` operations per minute on average, with bursts up to `burst`.

    Rate limits are respected, not discovered (architecture §6): every HTTP attempt takes a token first.
    Thread-safe; a caller that finds the bucket empty reserves a future slot and sleeps until it.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._rate = rate_per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token now and return how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; return the time slept."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog; DPS at-scale guidance).

    `delay(n)` for the n-th retry (0-based) is uniform in [0, min(cap, base * 2**n)]; a server's
    `Retry-After` replaces it (never waiting less than asked), bounded by `max_retry_after`.
    """

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int = 6
    max_retry_after: float = 300.0

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Return seconds to wait before retry number `retry` (0 = first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.cap, self.base * (2.0 ** min(retry, 62)))
        return rng(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse `Retry-After` as delta-seconds or an HTTP-date; None if absent or unparseable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)
