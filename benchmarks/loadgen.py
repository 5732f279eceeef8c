"""Load generator: plays stations and devices against the central pipeline over its public contract.

Stations: publishes `unit.scanned` on each station's own event topic, answers every `flash.config`
command by opening the envelope with that station's X25519 key, checking the SHA-256 the pipeline
announced, and publishing `config.flashed`. Devices: after a flash, registers the device with the DPS
emulator's device API using the key read from the flashed config (as a booting IoT Edge device would).
Counts `unit.assigned` / `unit.failed` events to keep at most `window` units in flight, paced at `rate`
scans per second. Not responsible for: starting the pipeline or measuring it (benchmarks.pipeline).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.bus.cloudevents import DecodeError, decode, encode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.bus.topics import Topics
from pipeline.crypto.envelope import open_from_pipeline
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import ConfigFlashed, FlashConfig, UnitAssigned, UnitFailed, UnitScanned
from pipeline.domain.identity import DeviceIdentity
from pipeline.edgeconfig.parse import parse_provisioning

log = logging.getLogger("loadgen")
PUBLISH_BATCH = 200


@dataclass
class Progress:
    """What the generator saw, with monotonic timestamps per registration ID."""

    scanned_at: dict[str, float] = field(default_factory=dict)
    command_at: dict[str, float] = field(default_factory=dict)
    assigned_at: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    bad_commands: int = 0
    device_errors: int = 0


class LoadGenerator:
    """K stations on one line, N units, at most `window` in flight."""

    def __init__(
        self,
        bus: PahoBus,
        topics: Topics,
        stations: dict[str, StationKeyPair],
        *,
        line: str,
        id_scope: str,
        dps_endpoint: str,
        window: int,
        rate: float,
        device_threads: int = 32,
    ) -> None:
        self._bus, self._topics, self._stations, self._line = bus, topics, stations, line
        self._id_scope, self._dps_endpoint = id_scope, dps_endpoint
        self._window = threading.BoundedSemaphore(max(window, 1))
        self._rate = rate
        self._outgoing: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._devices = ThreadPoolExecutor(max_workers=device_threads, thread_name_prefix="device")
        self._registrar = HttpDeviceRegistrar(poll_interval=0.02, max_poll_interval=0.05)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._expected = 0
        self.progress = Progress()

    def start(self) -> None:
        """Subscribe to the stations' flash commands and the pipeline's outcome events."""
        for name in self._stations:
            self._bus.subscribe(
                self._topics.station_command(self._line, name, FlashConfig.NAME), self._on_command
            )
        for kind in (UnitAssigned, UnitFailed):
            self._bus.subscribe(self._topics.unit_event(kind.NAME), self._on_outcome)
        threading.Thread(target=self._publisher, name="loadgen-publisher", daemon=True).start()

    def run(self, units: int, timeout: float, *, serial_prefix: str = "") -> bool:
        """Scan `units` units; return whether all reached assigned/failed within `timeout` s."""
        self._expected = units
        prefix = serial_prefix or uuid.uuid4().hex[:6].upper()
        names = sorted(self._stations)
        started = time.monotonic()
        for n in range(units):
            if not self._window.acquire(timeout=max(timeout - (time.monotonic() - started), 0.0)):
                return False
            if self._rate > 0:
                time.sleep(max(started + n / self._rate - time.monotonic(), 0.0))
            self._scan(prefix, n, names[n % len(names)])
        return self._done.wait(max(timeout - (time.monotonic() - started), 0.0))

    def stop(self) -> None:
        """Stop the publisher and the device threads."""
        self._outgoing.put(None)
        self._devices.shutdown(wait=False, cancel_futures=True)
        self._registrar.close()

    def _scan(self, prefix: str, n: int, station: str) -> None:
        serial = f"{prefix}{n:08d}"
        mac = ":".join(f"{b:02X}" for b in (0x02, 0xBE, *n.to_bytes(4, "big")))
        rid = DeviceIdentity.parse(serial, mac).registration_id("sn-{serial}-mac-{mac}")
        message = UnitScanned(
            registration_id=rid, serial=serial, mac=mac, line=self._line, station=station, port="p0"
        )
        _, payload = encode(message, source=f"edgeline/stations/{station}")
        self.progress.scanned_at[rid] = time.monotonic()
        self._outgoing.put((self._topics.station_event(self._line, station, UnitScanned.NAME), payload))

    def _publisher(self) -> None:
        while (item := self._outgoing.get()) is not None:
            batch = [item]
            while len(batch) < PUBLISH_BATCH:
                try:
                    nxt = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._outgoing.put(None)
                    break
                batch.append(nxt)
            sent = 0
            while sent < len(batch):
                sent += self._bus.publish_many(batch[sent:])

    def _on_command(self, message: InboundMessage) -> None:
        message.ack()  # a station would ack after writing; the generator has nothing to lose
        try:
            command = decode(message.payload).message
            assert isinstance(command, FlashConfig)
            config = open_from_pipeline(
                self._stations[command.station],
                command.envelope,
                station_name=command.station,
                registration_id=command.registration_id,
            )
        except (DecodeError, AssertionError, KeyError, ValueError) as exc:
            log.warning("bad flash command on %s: %s", message.topic, exc)
            self.progress.bad_commands += 1
            return
        self.progress.command_at.setdefault(command.registration_id, time.monotonic())
        digest = hashlib.sha256(config).hexdigest()
        if digest != command.config_sha256:
            self.progress.bad_commands += 1
            return
        flashed = ConfigFlashed(
            registration_id=command.registration_id,
            station=command.station,
            port=command.port,
            config_sha256=digest,
        )
        _, payload = encode(flashed, source=f"edgeline/stations/{command.station}")
        self._outgoing.put((self._topics.station_event(self._line, command.station, flashed.NAME), payload))
        self._devices.submit(self._boot_device, config, command.config_path)

    def _boot_device(self, config: bytes, path: str) -> None:
        try:
            parsed = parse_provisioning(config, path)
            self._registrar.register(
                global_endpoint=self._dps_endpoint,
                id_scope=self._id_scope,
                registration_id=parsed.registration_id,
                key=parsed.device_key,
            )
        except Exception as exc:  # counted and reported; the pipeline's confirmer decides the unit
            log.warning("device registration failed: %s", type(exc).__name__)
            with self._lock:
                self.progress.device_errors += 1

    def _on_outcome(self, message: InboundMessage) -> None:
        message.ack()
        try:
            event = decode(message.payload).message
        except DecodeError:
            return
        rid = getattr(event, "registration_id", "")
        with self._lock:
            if rid not in self.progress.scanned_at or rid in self.progress.assigned_at:
                return
            if isinstance(event, UnitFailed):
                self.progress.failed[rid] = event.reason  # may be retried; only assigned ends a unit
                return
            self.progress.assigned_at[rid] = time.monotonic()
            finished = len(self.progress.assigned_at)
        self._window.release()
        if finished >= self._expected:
            self._done.set()
