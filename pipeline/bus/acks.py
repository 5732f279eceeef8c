"""Bookkeeping of MQTT acknowledgements, both ways, for the paho adapter (no paho import here).

Responsible for: matching PUBACK/SUBACK to the thread waiting on that packet id (`Acks`), and
remembering which received messages are not acknowledged yet, and since when (`UnackedWatch`), so
that work piling up in a worker is logged with what to check instead of going unnoticed.
Not responsible for: MQTT itself (pipeline.bus.paho) or running handlers (pipeline.bus.inbox).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_CHECK_INTERVAL = 5.0  # seconds between looks at the un-acked backlog


class Acks:
    """Matches broker acknowledgements (PUBACK, SUBACK) to the thread waiting on that packet id.

    An acknowledgement can arrive before `client.publish()` has even returned its mid, so results
    are stored on arrival and collected by `wait`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._results: dict[int, str | None] = {}
        self._abandoned: set[int] = set()

    def complete(self, mid: int, error: str | None) -> None:
        with self._cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            self._results[mid] = error
            self._cond.notify_all()

    def wait(self, mid: int, timeout: float) -> tuple[bool, str | None]:
        """Return (acknowledged, broker error) for `mid`, giving up after `timeout` seconds."""
        with self._cond:
            if self._cond.wait_for(lambda: mid in self._results, max(timeout, 0.0)):
                return True, self._results.pop(mid)
            self._abandoned.add(mid)
            return False, None


@dataclass(frozen=True, slots=True)
class Backlog:
    """How many received messages wait for their acknowledgement, and the age of the oldest."""

    count: int
    oldest_seconds: float


class UnackedWatch:
    """Received-but-not-acknowledged messages, keyed by a token, with their arrival times.

    Why: an un-acked message holds one of the broker's in-flight slots for this client; a handler that
    hangs (database or DPS unreachable) makes the broker stop delivering to this client while the
    rest of the group waits for nothing. Nothing in MQTT reports that, so the worker must.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: dict[int, float] = {}
        self._next = 0
        self._stop = threading.Event()
        self._watching = False

    def received(self) -> int:
        """Record a message's arrival; return the token to pass to `acked`."""
        with self._lock:
            self._next += 1
            self._since[self._next] = self._clock()
            return self._next

    def acked(self, token: int) -> None:
        with self._lock:
            self._since.pop(token, None)

    def backlog(self) -> Backlog:
        with self._lock:
            oldest = min(self._since.values(), default=None)
            count = len(self._since)
        return Backlog(count, 0.0 if oldest is None else self._clock() - oldest)

    def start_warnings(
        self, client_id: str, max_count: int, max_seconds: float, warn: Callable[[str], None]
    ) -> None:
        """Check the backlog every few seconds on a daemon thread; `warn` when it is over a threshold.

        Repeats at most every `max_seconds` (at least 5 s; 60 s when only the count is watched).
        """
        if self._watching or (max_count <= 0 and max_seconds <= 0):
            return
        self._watching = True
        every = max(max_seconds, 5.0) if max_seconds > 0 else 60.0

        def run() -> None:
            last = -every
            while not self._stop.wait(_CHECK_INTERVAL):
                warning = backlog_warning(self.backlog(), client_id, max_count, max_seconds)
                if warning and self._clock() - last >= every:
                    warn(warning)
                    last = self._clock()

        threading.Thread(target=run, name="mqtt-unacked-watch", daemon=True).start()

    def stop_warnings(self) -> None:
        self._stop.set()

    def clear(self) -> None:
        """Forget everything (after a reconnect the broker redelivers what was not acknowledged)."""
        with self._lock:
            self._since.clear()


def backlog_warning(backlog: Backlog, client_id: str, max_count: int, max_seconds: float) -> str | None:
    """The warning to log when `backlog` is over either threshold (0 disables that one), else None."""
    too_many = max_count > 0 and backlog.count >= max_count
    too_old = max_seconds > 0 and backlog.count > 0 and backlog.oldest_seconds >= max_seconds
    if not (too_many or too_old):
        return None
    return (
        f"MQTT client {client_id} holds {backlog.count} received message(s) unacknowledged, the oldest "
        f"for {backlog.oldest_seconds:.0f} s: its handlers are stuck or slow — check that the database "
        "and DPS answer (`edgeline doctor`), and worker_threads (EDGELINE_WORKER_THREADS); thresholds: "
        "mqtt_unacked_warn_count / mqtt_unacked_warn_seconds"
    )
