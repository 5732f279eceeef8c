"""`SparkplugPublisher`: the line as a Sparkplug B edge node, its stations as devices.

Responsible for: the session's birth/death certificates and sequence numbers: NDEATH with this
session's `bdSeq` registered as the MQTT will (so a host learns of a crash from the broker), NBIRTH
(seq 0, same `bdSeq`) and one DBIRTH per station after every (re)connect, then NDATA/DDATA with the
metrics that changed, every `sparkplug_interval_seconds`, `seq` counting 0..255 and wrapping; a station
seen for the first time gets its DBIRTH first; an NCMD `Node Control/Rebirth` = true from a host
publishes the births again; a clean stop publishes NDEATH before disconnecting.
`bdSeq` goes up by one (mod 256) with every MQTT CONNECT (a `Session` makes the will just before it,
the births then carry the same number), kept in `{state_dir}/sparkplug-bdseq-{node}` across restarts.
Not responsible for: encoding (codec), reading the database (a `LineStateReader`), MQTT (the bus port).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pipeline.bus.ports import Bus, BusError, InboundMessage, Will
from pipeline.sparkplug import codec
from pipeline.sparkplug.model import LineSnapshot, MetricValue, changed, metrics_of

SEQ_LIMIT = 256
log = logging.getLogger(__name__)


class LineStateReader(Protocol):
    """Where the counts come from (e.g. `pipeline.db.line_state.SqlLineState`)."""

    def snapshot(self) -> LineSnapshot: ...


def next_bd_seq(path: Path) -> int:
    """The next birth/death sequence number (0..255), persisted so a restart never reuses the last one."""
    try:
        previous = int(path.read_text().strip())
    except (OSError, ValueError):
        previous = -1
    value = (previous + 1) % SEQ_LIMIT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")
    return value


def death_will(group: str, node: str, bd_seq: int) -> Will:
    """The NDEATH the broker publishes if this edge node vanishes (not retained, per Sparkplug)."""
    return Will(codec.topic("NDEATH", group, node), codec.node_death(bd_seq), retain=False)


class Session:
    """The birth/death sequence number of the current MQTT session: a new one for every CONNECT."""

    def __init__(self, group: str, node: str, path: Path) -> None:
        self._group, self._node, self._path = group, node, path
        self.bd_seq = -1  # none yet: set by next_will, just before each CONNECT

    def next_will(self) -> Will:
        """Take the next bdSeq and return the NDEATH carrying it (paho's pre-connect hook: never raises)."""
        try:
            self.bd_seq = next_bd_seq(self._path)
        except OSError as exc:  # an unwritable state dir must not stop the connection
            log.warning(
                "sparkplug: cannot keep bdSeq in %s (%s); counting in memory", self._path, exc.strerror
            )
            self.bd_seq = (self.bd_seq + 1) % SEQ_LIMIT
        return death_will(self._group, self._node, self.bd_seq)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SparkplugPublisher:
    """Publishes births after each connect and changed metrics periodically."""

    def __init__(
        self,
        bus: Bus,
        reader: LineStateReader,
        *,
        group: str,
        node: str,
        session: Session,
        interval: float,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._bus, self._reader = bus, reader
        self._group, self._node, self._session = group, node, session
        self._interval, self._clock_ms = interval, clock_ms
        self._seq = 0
        self._last: dict[str | None, list[MetricValue]] = {}  # None: the node itself
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkplug", daemon=True)

    def __repr__(self) -> str:
        return f"SparkplugPublisher(group={self._group!r}, node={self._node!r}, bdSeq={self._session.bd_seq})"

    def start(self, timeout: float = 10.0) -> None:
        """Connect (the session's will is made just before), publish the births, start the reports."""
        self._bus.on_connected(self._rebirth)
        self._bus.subscribe(codec.topic("NCMD", self._group, self._node), self._on_command)
        self._bus.connect(timeout)
        self._thread.start()

    def stop(self) -> None:
        """Stop reporting, publish NDEATH (a clean disconnect discards the will), disconnect."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            death = codec.node_death(self._session.bd_seq)
            self._bus.publish(codec.topic("NDEATH", self._group, self._node), death)
        except BusError as exc:
            log.warning("sparkplug: NDEATH not published (%s); hosts will see the will instead", exc)
        self._bus.close()

    def _on_command(self, message: InboundMessage) -> None:
        """NCMD: `Node Control/Rebirth` = true publishes the births again (hosts ask after a seq gap)."""
        try:
            if codec.is_rebirth_request(message.payload):
                log.info("sparkplug: rebirth requested by a host")
                self._rebirth()
            else:
                log.warning(
                    "sparkplug: ignored an NCMD that is not a rebirth request (%d bytes)",
                    len(message.payload),
                )
        finally:
            message.ack()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_LIMIT
        return self._seq

    def _rebirth(self) -> None:
        """NBIRTH (seq 0) and every station's DBIRTH: what a host needs after any (re)connect."""
        with self._lock:
            self._last.clear()
            try:
                snapshot = self._reader.snapshot()
                self._seq = 0
                node_metrics = metrics_of(snapshot.line_state())
                now = self._clock_ms()
                payload = codec.node_birth(now, self._session.bd_seq, node_metrics)
                self._bus.publish(codec.topic("NBIRTH", self._group, self._node), payload)
                self._last[None] = node_metrics
                for station, state in snapshot.stations.items():
                    self._device_birth(station, metrics_of(state))
            except Exception as exc:  # a failed birth (broker, database) is retried on the next connect/round
                self._last.clear()
                log.warning("sparkplug: births not published: %s: %s", type(exc).__name__, exc)

    def _device_birth(self, station: str, metrics: list[MetricValue]) -> None:
        payload = codec.device_birth(self._clock_ms(), self._next_seq(), metrics)
        self._bus.publish(codec.topic("DBIRTH", self._group, self._node, station), payload)
        self._last[station] = metrics

    def report(self) -> int:
        """Publish what changed since the last report; return how many messages went out."""
        with self._lock:
            if None not in self._last:
                return 0  # not born in this session yet: the next (re)connect or round does it
            snapshot = self._reader.snapshot()
            sent = self._send_changes(None, metrics_of(snapshot.line_state()))
            for station, state in snapshot.stations.items():
                current = metrics_of(state)
                if station not in self._last:
                    self._device_birth(station, current)
                    sent += 1
                else:
                    sent += self._send_changes(station, current)
            return sent

    def _send_changes(self, station: str | None, current: list[MetricValue]) -> int:
        delta = changed(self._last.get(station), current)
        if not delta:
            return 0
        payload = codec.data(self._clock_ms(), self._next_seq(), delta, device=station is not None)
        kind = "DDATA" if station is not None else "NDATA"
        self._bus.publish(codec.topic(kind, self._group, self._node, station), payload)
        self._last[station] = current
        return 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if None not in self._last and self._bus.connected:
                    self._rebirth()
                else:
                    self.report()
            except Exception as exc:  # keep reporting: a DB or broker hiccup must not end the thread
                log.warning("sparkplug: report failed: %s: %s", type(exc).__name__, exc)
