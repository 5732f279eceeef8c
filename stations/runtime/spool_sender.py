"""The one thread that moves spooled station events to the broker, oldest first.

Responsible for: publishing each pending event of a `Spool` at QoS 1, marking it sent only after the
broker's PUBACK, re-sending held events (`config.flashed`) every `resend_interval` seconds until the
pipeline acknowledges them (the spool forgets them then), waiting out broker outages (one log line
per outage, not per event), and a bounded flush on shutdown. Order is kept because there is exactly
one sender and it never skips an event.
Not responsible for: durability (`stations.runtime.spool`) or encoding (the agent). Delivery is at least once:
a PUBACK lost in a broker crash means the same bytes are sent again, which the pipeline drops by id.
"""

from __future__ import annotations

import logging
import threading
import time

from pipeline.bus.ports import Bus, BusError
from stations.runtime.spool import Spool, SpooledEvent

log = logging.getLogger(__name__)
# Long enough that a publish caught by a short outage completes on the same packet after reconnecting
# (paho resends it) instead of timing out and being published a second time.
PUBLISH_TIMEOUT_S = 30.0


class SpoolSender:
    """Drains a spool to the bus in order on a background thread."""

    def __init__(
        self,
        spool: Spool,
        bus: Bus,
        *,
        name: str = "station",
        resend_interval: float = 30.0,
        max_resends: int = 2880,
    ) -> None:
        self.spool = spool
        self.bus = bus
        self.resend_interval, self.max_resends = resend_interval, max_resends
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"spool-{name}", daemon=True)
        self._outage: str | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Tell the sender a new event was spooled."""
        with self.spool.changed:
            self.spool.changed.notify_all()

    def drained(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        with self.spool.changed:
            return self.spool.changed.wait_for(
                lambda: self.spool.first() is None, max(deadline - time.monotonic(), 0.0)
            )

    def stop(self, flush_timeout: float = 3.0) -> None:
        """Send what can be sent within `flush_timeout`, then stop; the rest stays spooled."""
        if self._thread.is_alive():
            self.drained(flush_timeout)
        self._stop.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self._next()
            if not self.bus.connected:
                self._stop.wait(0.2)  # never hand paho a packet it would queue blindly while offline
                continue
            if event is not None:
                self._send(event)
            elif self.spool.first() is None:
                self._resend_held()

    def _resend_held(self) -> None:
        """Send again, same bytes and id, every held event the pipeline has not acknowledged in time."""
        for event in self.spool.due_again(time.monotonic(), self.resend_interval):
            if self._stop.is_set() or self.spool.first() is not None:
                return  # new events first: order of fresh events matters more than a repeat
            if self.spool.resends(event.event_id) >= self.max_resends:
                self._give_up(event)
                continue
            try:
                self.bus.publish(event.topic, event.payload, timeout=PUBLISH_TIMEOUT_S)
            except BusError:
                return  # the outage is logged by the next regular send
            log.info("station %s: re-sent unacknowledged event %s", self._name, event.event_id)
            self.spool.sent_again(event, time.monotonic())

    def _give_up(self, event: SpooledEvent) -> None:
        """Stop re-sending an event the pipeline never acknowledges (a pipeline without flash.recorded)."""
        log.error(
            "station %s: the pipeline never acknowledged event %s after %d re-sends; dropping it from the "
            "spool (the confirmer still records the unit once DPS assigns it): check that `edgeline up` "
            "is running and sends flash.recorded",
            self._name,
            event.event_id,
            self.max_resends,
        )
        try:
            self.spool.acknowledge(event.event_id)
        except OSError as exc:
            log.error("station %s: cannot update spool %s: %s", self._name, self.spool.folder, exc)

    def _next(self) -> SpooledEvent | None:
        with self.spool.changed:
            self.spool.changed.wait_for(lambda: self._stop.is_set() or self.spool.first() is not None, 1.0)
        return None if self._stop.is_set() else self.spool.first()

    def _send(self, event: SpooledEvent) -> None:
        try:
            self.bus.publish(event.topic, event.payload, timeout=PUBLISH_TIMEOUT_S)
        except BusError as exc:
            if self._outage is None:
                log.warning("station %s: broker unavailable, spooling events on disk (%s)", self._name, exc)
            self._outage = str(exc)
            self._stop.wait(0.5)
            return
        try:
            self.spool.mark_sent(event, time.monotonic())
        except OSError as exc:  # sent but not marked: it will be sent again, and dropped by its id
            log.error("station %s: cannot mark event sent in %s: %s", self._name, self.spool.folder, exc)
            self._stop.wait(1.0)
            return
        if self._outage is not None:
            log.info("station %s: broker reachable again, sending spooled events", self._name)
            self._outage = None
