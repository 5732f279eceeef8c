"""Outbox relay: publishes committed outbox rows to the bus, then marks them published (architecture §6).

A crash between publish and mark only causes a duplicate, which consumers drop by event id; a crash
before publish only delays the message. Several relays (one per `edgeline up` process) may share a
database: each batch is claimed through `Outbox.claim_pending`, which keeps other relays off the rows
until this unit of work commits where the database can lock rows (PostgreSQL), so no row is published
twice in normal operation. How a claim is held is the Outbox adapter's business, not the relay's.

The floor: each claim starts at the lowest id this relay may still find pending (`min_id`), so it does
not walk the index entries of every row published since the last VACUUM (thousands per claim at a few
hundred messages per second). A row whose transaction took an id below the floor but committed later
is picked up by the full scan every `full_scan_every` seconds (and whenever a claim comes back empty).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from pipeline.bus.ports import Bus, BusError
from pipeline.service.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


class OutboxRelay:
    """Background publisher of the outbox; `wake()` after a commit makes it publish at once."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        bus: Bus,
        clock: Callable[[], datetime],
        is_transient: Callable[[BaseException], bool],
        *,
        batch: int = 200,
        idle: float = 0.5,
        full_scan_every: float = 2.0,
    ) -> None:
        self._uow_factory = uow_factory
        self._bus = bus
        self._clock = clock
        self._is_transient = is_transient
        self._batch = batch
        self._idle = idle
        self._full_scan_every = full_scan_every
        self._floor = 0
        self._last_full_scan = -math.inf  # the first claim scans everything (monotonic() may be small)
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Publish pending rows now rather than at the next idle tick."""
        self._wakeup.set()

    def run_once(self) -> int:
        """Publish one batch; return how many rows were published."""
        now = time.monotonic()
        floor = self._floor
        if now - self._last_full_scan >= self._full_scan_every:
            floor, self._last_full_scan = 0, now
        with self._uow_factory() as uow:
            items = uow.outbox.claim_pending(self._batch, min_id=floor)
            if not items:
                self._last_full_scan = -math.inf if floor else now  # empty above the floor: look below next
                return 0
            count = self._bus.publish_many([(item.topic, item.payload) for item in items])
            uow.outbox.mark_published([item.id for item in items[:count]], self._clock())
            uow.commit()
        # Below the floor now: published, claimed by another relay, or not yet committed (full scan).
        self._floor = items[count].id if count < len(items) else items[-1].id + 1
        return count

    def start(self) -> None:
        """Run the relay on a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current batch."""
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                count = self.run_once()
                failures = 0
            except Exception as exc:
                if not (isinstance(exc, BusError) or self._is_transient(exc)):
                    log.exception("outbox relay failed")
                else:
                    log.warning("outbox relay: %s; retrying", exc)
                failures += 1
                self._stop.wait(min(0.5 * 2**failures, 10.0))
                continue
            if count == 0:
                self._wakeup.wait(self._idle)
                self._wakeup.clear()
