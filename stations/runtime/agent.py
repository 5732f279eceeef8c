"""The station agent: one worker per port, speaking to the pipeline only through the bus.

Responsible for: presence (retained status + last will), routing flash commands and refusals
(`unit.refused`) to the port whose device they are for, and publishing scans and results through
the offline spool: `publish_event` writes the encoded event to disk and returns at once (a port
worker never waits for the broker); the spool sender delivers it, in order, when the broker is
reachable — so an outage or a station restart delays events but never loses or duplicates them.
Also relays port stage changes to the operator view.
Not responsible for: the device command set (`stations.drivers`), the database (stations never see it),
how the spool stores or sends (`stations.runtime.spool`,
`stations.runtime.spool_sender`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipeline.bus.cloudevents import DecodeError, decode, encode
from pipeline.bus.ports import Bus, BusError, InboundMessage, Will
from pipeline.bus.topics import Topics
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import (
    ConfigFlashed,
    FlashConfig,
    FlashFailed,
    FlashRecorded,
    Message,
    StationStatus,
    UnitNotice,
    UnitRefused,
)
from stations.runtime.config import StationConfig
from stations.runtime.results import PortResult
from stations.runtime.spool import Spool, SpoolError
from stations.runtime.spool_sender import SpoolSender
from stations.runtime.stages import Stage, StageDetail, StageHook

log = logging.getLogger(__name__)
NOTICE_STAGES: dict[str, Stage] = {"assigned": "ASSIGNED", "overdue": "OVERDUE"}
"""How a `unit.notice` kind shows on the port that handled the unit; other kinds are logged only."""
ResultSink = Callable[[PortResult], None]
Command = FlashConfig | UnitRefused  # what a waiting port worker can receive for its unit


class StationAgent:
    """Connects the station's ports to the pipeline."""

    def __init__(
        self,
        config: StationConfig,
        bus: Bus,
        keypair: StationKeyPair,
        on_result: ResultSink | None = None,
        *,
        on_stage: StageHook | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.keypair = keypair
        self.topics = Topics(config.topic_root)
        self._on_result = on_result
        self._on_stage = on_stage
        self.spool = spool or Spool(spool_dir(config), max_events=config.spool_max_events)
        self.sender = SpoolSender(
            self.spool,
            bus,
            name=config.name,
            resend_interval=config.flash_ack_resend_seconds,
            max_resends=config.flash_ack_max_resends,
        )
        self._showing: dict[str, str | None] = {}  # port -> registration ID the operator sees there
        self._waiting: dict[str, queue.Queue[Command]] = {}
        self._waiting_macs: dict[str, str] = {}  # registration ID -> MAC, to match a refusal without ID
        self._done: dict[str, str] = {}  # registration ID -> SHA-256 flashed and verified
        # registration ID -> event id of its `config.flashed` in this visit (of the SHA-256 in `_done`): a
        # confirmation asked for again (a resent command) is the same event, so the pipeline records it once.
        self._confirmations: dict[str, str] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def source(self) -> str:
        return station_source(self.config)

    def status_payload(self, online: bool) -> bytes:
        """The retained presence message (also used as the MQTT last will with online=False)."""
        return status_message(self.config, online).payload

    def start(self) -> None:
        """Listen for flash commands, announce presence, start sending the spool; connected or not.

        The bus need not be connected yet (a station PC often boots before the broker is reachable):
        the bus sends the command subscription on every connect, and the retained online status is
        published again after every (re)connect, since the last will may have replaced it meanwhile.
        """
        self.bus.on_connected(self._announce)  # before the check below, so no connect goes unannounced
        try:
            self.bus.subscribe(self.topics.commands_for(self.config.line, self.config.name), self._on_command)
            if self.bus.connected:
                self._publish_status(online=True)
        except BusError as exc:  # the connection dropped just now: the next connect does both again
            log.warning("station %s: %s; retrying when the broker is back", self.config.name, exc)
        self.sender.start()

    def stop(self) -> None:
        """Stop workers' waits, send what is spooled (briefly), say goodbye (retained offline status)."""
        self.stopping.set()
        self.sender.stop(flush_timeout=3.0)
        if not self.bus.connected:
            return  # the broker already published the last will (offline) when the connection was lost
        with contextlib.suppress(BusError):  # then the broker publishes the last will instead
            self._publish_status(online=False, timeout=3.0)

    def _announce(self) -> None:
        """Publish the retained online status after a (re)connect (runs on the bus's callback thread)."""
        if self.stopping.is_set():
            return
        try:
            self._publish_status(online=True)
        except BusError as exc:  # lost again at once: the next connect announces again
            log.warning("station %s: cannot announce presence: %s", self.config.name, exc)

    def _publish_status(self, *, online: bool, timeout: float = 10.0) -> None:
        status_topic = self.topics.station_status(self.config.line, self.config.name)
        self.bus.publish(status_topic, self.status_payload(online), retain=True, timeout=timeout)

    def publish_event(
        self, message: Message, *, event_id: str | None = None, at: datetime | None = None
    ) -> str:
        """Spool a station event on disk for the sender and return its event id at once.

        Publishing again with the same id is a no-op for the pipeline (idempotency key); while an event
        with that id is still unsent, a repeat is not even spooled. Raises SpoolError (SpoolFull when
        the broker has been away too long) — the event is then NOT recorded. `at` is the event's
        CloudEvents time (default: now); a repeat passes the original time, which the pipeline records
        as when the station did it (e.g. `station_scanned_at`).
        """
        if event_id is not None and self.spool.is_pending(event_id):
            return event_id
        event_id, payload = encode(message, source=self.source, event_id=event_id, time=at)
        if isinstance(message, ConfigFlashed):
            with self._lock:
                self._confirmations[message.registration_id] = event_id
        topic = self.topics.station_event(self.config.line, self.config.name, message.NAME)
        # An outcome is kept until the pipeline says it recorded it (flash.recorded), not just the broker.
        self.spool.append(event_id, topic, payload, hold=isinstance(message, ConfigFlashed))
        return event_id

    def stage(self, port: str, stage: Stage, detail: StageDetail | None = None) -> None:
        """Tell the operator view where a port is; a broken view never stops a port."""
        with self._lock:
            if detail is not None and detail.registration_id:
                self._showing[port] = detail.registration_id
            elif stage == "identifying":  # a new device; after an unplug the row still tells of the last one
                self._showing[port] = None
        if self._on_stage is None:
            return
        try:
            self._on_stage(port, stage, detail or StageDetail())
        except Exception:  # the display is not worth a failed unit
            log.exception("station %s: the on_stage hook failed", self.config.name)

    def expect(self, registration_id: str, mac: str | None = None) -> queue.Queue[Command]:
        """Register a port worker as waiting for this unit's flash command (or its refusal)."""
        inbox: queue.Queue[Command] = queue.Queue()
        with self._lock:
            self._waiting[registration_id] = inbox
            if mac is not None:
                self._waiting_macs[registration_id] = mac
            self._done.pop(registration_id, None)
            self._confirmations.pop(registration_id, None)
        return inbox

    def finished(self, registration_id: str, flashed_sha256: str | None) -> None:
        """A port worker is done with a unit (sha256 set if it flashed and verified)."""
        with self._lock:
            self._waiting.pop(registration_id, None)
            self._waiting_macs.pop(registration_id, None)
            if flashed_sha256:
                self._done[registration_id] = flashed_sha256

    def report(self, result: PortResult) -> None:
        """Tell the operator (log line and the result sink)."""
        (log.info if result.outcome == "PASS" else log.warning)("%s", result.human())
        if self._on_result is not None:
            self._on_result(result)

    def _on_command(self, message: InboundMessage) -> None:
        try:
            command = decode(message.payload).message
        except DecodeError as exc:
            log.warning(
                "station %s: ignoring malformed command on %s: %s", self.config.name, message.topic, exc
            )
            message.ack()
            return
        if getattr(command, "station", None) != self.config.name:
            log.warning(
                "station %s: ignoring %s not addressed to it", self.config.name, type(command).__name__
            )
        elif isinstance(command, FlashConfig):
            try:
                self._route(command)
            except SpoolError as exc:  # the pipeline's reconciler sends the command again later
                log.error("station %s: %s", self.config.name, exc)
        elif isinstance(command, UnitRefused):
            self._route_refusal(command)
        elif isinstance(command, FlashRecorded):
            self._recorded(command)
        elif isinstance(command, UnitNotice):
            self._notice(command)
        else:
            log.warning(
                "station %s: ignoring unexpected %s command", self.config.name, type(command).__name__
            )
        message.ack()

    def _route_refusal(self, refusal: UnitRefused) -> None:
        """Hand a refusal to the port waiting for that unit, so it stops waiting and re-sending."""
        with self._lock:
            rid = refusal.registration_id
            if rid is None or rid not in self._waiting:
                rid = next((r for r, mac in self._waiting_macs.items() if mac == refusal.mac), None)
            inbox = self._waiting.get(rid) if rid is not None else None
        if inbox is not None:
            inbox.put(refusal)
        else:  # that port already gave up (timeout, unplugged): nothing waits to be told
            log.info(
                "station %s: the pipeline refused %s (%s), which no port is waiting for",
                self.config.name,
                refusal.registration_id or refusal.mac,
                refusal.kind,
            )

    def _recorded(self, ack: FlashRecorded) -> None:
        """The pipeline committed a `config.flashed`: forget it (a late duplicate ack is harmless)."""
        try:
            if self.spool.acknowledge(ack.event_id):
                log.info(
                    "station %s: pipeline recorded %s for %s",
                    self.config.name,
                    ack.outcome,
                    ack.registration_id,
                )
        except OSError as exc:  # not noted on disk: the event is re-sent and acknowledged again
            log.error(
                "station %s: cannot note acknowledgement in %s: %s", self.config.name, self.spool.folder, exc
            )

    def _notice(self, notice: UnitNotice) -> None:
        """Show the operator what the pipeline says about a unit (assigned, overdue, ...)."""
        (log.info if notice.kind == "assigned" else log.warning)(
            "station %s: %s %s: %s",
            self.config.name,
            notice.kind.upper(),
            notice.registration_id,
            notice.reason,
        )
        stage = NOTICE_STAGES.get(notice.kind)
        if stage is None:
            return
        with self._lock:
            ports = [port for port, rid in self._showing.items() if rid == notice.registration_id]
        for port in ports:
            self.stage(port, stage, StageDetail(notice.reason, registration_id=notice.registration_id))

    def _route(self, command: FlashConfig) -> None:
        with self._lock:
            inbox = self._waiting.get(command.registration_id)
            done_sha = self._done.get(command.registration_id)
            confirmed = self._confirmations.get(command.registration_id)
        if inbox is not None:
            inbox.put(command)
        elif done_sha == command.config_sha256:
            # A resent command for a config already verified on the device: confirm again, under the
            # first confirmation's event id, so the pipeline takes it as the duplicate it is.
            self.publish_event(
                ConfigFlashed(
                    registration_id=command.registration_id,
                    station=self.config.name,
                    port=command.port,
                    config_sha256=done_sha,
                ),
                event_id=confirmed,
            )
        else:
            self.publish_event(
                FlashFailed(
                    registration_id=command.registration_id,
                    station=self.config.name,
                    port=command.port,
                    reason="the device is no longer on this station (unplugged before its config arrived): "
                    "plug it in again to rework it",
                    retryable=False,
                )
            )


def spool_dir(config: StationConfig) -> Path:
    """Where a station spools its events: `spool_dir` if set, else `<key file>.spool` beside the key."""
    return config.spool_dir or config.key_file.with_name(f"{config.key_file.name}.spool")


def station_source(config: StationConfig) -> str:
    """The CloudEvents `source` of a station's events."""
    return f"edgeline/stations/{config.name}"


def status_message(config: StationConfig, online: bool) -> Will:
    """The retained presence message of a station; with online=False it is the MQTT last will."""
    _, payload = encode(
        StationStatus(line=config.line, station=config.name, online=online),
        source=station_source(config),
        subject=config.name,
    )
    return Will(topic=Topics(config.topic_root).station_status(config.line, config.name), payload=payload)
