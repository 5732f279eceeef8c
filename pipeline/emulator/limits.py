"""Quotas and fault injection: the parts of the emulator that make clients cope with a hostile DPS.

Responsible for: sliding-window rate limits answering 429 + `Retry-After` (DPS limits, azure-notes §3:
1,000 operations/min, 1,000 registrations/min, 5 polls per 10 s per device), and runtime-switchable
faults (latency, 5xx, forced 429, dropped connections) for reliability tests (architecture §8, §10).
Not responsible for: deciding which requests count as what (the API modules call `take`).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.emulator.http import DropConnection, Request
from pipeline.emulator.wire import INTERNAL, THROTTLED, ApiError


def throttled(retry_after: float, what: str) -> ApiError:
    """429 with a whole-second `Retry-After` (at least 1)."""
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, THROTTLED, f"Too many requests: {what}.", {"Retry-After": str(seconds)})


class RateLimiter:
    """At most `limit` events per `window` seconds per key (a sliding log; fine at emulator scale)."""

    def __init__(self, limit: int, window: float, what: str) -> None:
        self.limit = limit
        self.window = window
        self.what = what
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str = "") -> None:
        """Count one event for `key`, or raise 429 telling when the oldest event leaves the window."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                raise throttled(events[0] + self.window - now, self.what)
            events.append(now)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Runtime faults. Rates are probabilities 0..1 per request; `throttle` answers every request 429."""

    latency_ms: int = 0
    error_rate_5xx: float = 0.0
    throttle: bool = False
    drop_connections_rate: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> FaultSettings:
        """Build from a control-API body; unknown fields are an error (typos must not pass silently)."""
        if not isinstance(data, dict):
            raise ApiError(400, 400004, "Faults must be a JSON object.")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ApiError(400, 400004, f"Unknown fault settings: {', '.join(sorted(unknown))}.")
        try:
            return cls(
                latency_ms=int(data.get("latency_ms", 0)),
                error_rate_5xx=float(data.get("error_rate_5xx", 0.0)),
                throttle=bool(data.get("throttle", False)),
                drop_connections_rate=float(data.get("drop_connections_rate", 0.0)),
            )
        except (TypeError, ValueError):
            raise ApiError(400, 400004, "Fault settings must be numbers (throttle: boolean).") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Applies the current FaultSettings to each request, before any route logic runs."""

    def __init__(self, seed: int | None = None) -> None:
        self.settings = FaultSettings()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def set(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings

    def __call__(self, request: Request) -> None:
        """A `before` hook: sleep, then maybe drop, 429 or 5xx."""
        with self._lock:
            settings = self.settings
            roll_drop, roll_error = self._random.random(), self._random.random()
        if settings.latency_ms > 0:
            time.sleep(settings.latency_ms / 1000)
        if roll_drop < settings.drop_connections_rate:
            raise DropConnection()
        if settings.throttle:
            raise throttled(1, "throttling injected by the emulator's fault settings")
        if roll_error < settings.error_rate_5xx:
            raise ApiError(503, INTERNAL, "Service unavailable (injected by the emulator's fault settings).")
