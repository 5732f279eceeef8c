"""A station driven one step at a time by an outside test sequencer (OpenHTF and the like).

The normal station (`stations.runtime`) runs every port by itself. A factory that already sequences its
tests wants the steps as calls it can place among its own phases: identify the device, ask the pipeline
for its config, flash and verify, optionally wait until DPS assigned it. Each step returns what it
measured or raises `ProvisioningError` with the reason an operator reads; the bus side (spool, presence,
command routing) is the same `StationAgent` the normal station uses.
Not responsible for: the sequencer (`stations.htf` adapts this to OpenHTF) or the device command set.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from dataclasses import dataclass

from pipeline.bus.paho import PahoBus
from pipeline.crypto.envelope import EnvelopeError, open_from_pipeline
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import ConfigFlashed, FlashConfig, FlashFailed, UnitRefused, UnitScanned
from pipeline.domain.identity import DeviceIdentity, IdentityError
from stations.drivers.port import DeviceDriver, DriverFactory
from stations.errors import StationError
from stations.runtime.agent import StationAgent, status_message
from stations.runtime.config import StationConfig
from stations.runtime.stages import Stage, StageDetail


class ProvisioningError(RuntimeError):
    """A step did not succeed; the message is the reason an operator acts on."""


@dataclass(frozen=True, slots=True)
class IdentifiedUnit:
    """The device on the fixture, as the pipeline will know it."""

    port: str
    registration_id: str
    serial: str
    mac: str


@dataclass(frozen=True, slots=True)
class FlashOutcome:
    """A config written to the device and proven by its read-back SHA-256."""

    config_sha256: str
    config_path: str
    seconds: float


class SequencedStation:
    """One station's bus connection plus step calls; `start()` before, `stop()` after."""

    def __init__(self, config: StationConfig, mqtt_url: str, open_driver: DriverFactory) -> None:
        self.config = config
        self._keypair = StationKeyPair.load(config.key_file)
        self._bus = PahoBus.from_url(
            mqtt_url, f"edgeline-station-{config.name}", will=status_message(config, online=False)
        )
        self.agent = StationAgent(config, self._bus, self._keypair, on_stage=self._on_stage)
        self._open_driver = open_driver
        self._drivers: dict[str, DeviceDriver] = {}
        self._assigned: dict[str, threading.Event] = {}
        self._last_word: dict[str, str] = {}  # registration ID -> the pipeline's latest notice about it

    def _on_stage(self, port: str, stage: Stage, detail: StageDetail) -> None:
        """Notices from the pipeline (`unit.notice`) reach the port that flashed the unit as a stage."""
        rid = detail.registration_id
        if rid is None or stage not in ("ASSIGNED", "OVERDUE"):
            return
        self._last_word[rid] = f"{stage}: {detail.text}"
        if stage == "ASSIGNED":
            self._assigned.setdefault(rid, threading.Event()).set()

    def start(self, connect_timeout: float = 10.0) -> None:
        """Subscribe to this station's commands and connect; raise if the broker cannot be reached."""
        self.agent.start()
        self._bus.start_background()
        if not self._bus.wait_connected(connect_timeout):
            raise ProvisioningError(f"MQTT broker unreachable: {self._bus.why_disconnected()}")

    def stop(self) -> None:
        for driver in self._drivers.values():
            driver.close()
        self._drivers.clear()
        self.agent.stop()
        self._bus.close()

    def identify(self, port: str) -> IdentifiedUnit:
        """Read serial and MAC from the device on `port` and build its registration ID."""
        try:
            info = self._driver(port).identify()
            identity = DeviceIdentity.parse(info.serial, info.mac)
            rid = identity.registration_id(self.config.registration_id_template)
        except (StationError, IdentityError) as exc:
            raise ProvisioningError(f"{port}: {exc}") from None
        return IdentifiedUnit(port, rid, identity.serial, identity.mac)

    def request_config(self, unit: IdentifiedUnit, timeout: float) -> FlashConfig:
        """Publish the unit's scan and wait for its encrypted config (re-sending the scan meanwhile)."""
        cfg = self.config
        inbox = self.agent.expect(unit.registration_id)
        scan = UnitScanned(
            registration_id=unit.registration_id,
            serial=unit.serial,
            mac=unit.mac,
            line=cfg.line,
            station=cfg.name,
            port=unit.port,
            product=cfg.product,
            batch=cfg.batch,
        )
        scan_id = self.agent.publish_event(scan)
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + cfg.rescan_interval_seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                command = inbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                if time.monotonic() >= next_resend:
                    self.agent.publish_event(scan, event_id=scan_id)
                    next_resend = time.monotonic() + cfg.rescan_interval_seconds
                continue
            if isinstance(command, UnitRefused):  # quarantined, denied by the MES, another station's unit
                self.agent.finished(unit.registration_id, None)
                raise ProvisioningError(f"the pipeline refused the unit ({command.kind}): {command.reason}")
            return command
        self.agent.finished(unit.registration_id, None)
        raise ProvisioningError(
            f"no config arrived from the pipeline within {timeout:g} s: check `edgeline up` and the broker"
        )

    def flash(self, unit: IdentifiedUnit, command: FlashConfig) -> FlashOutcome:
        """Decrypt, write and verify the config, report the outcome to the pipeline, reboot the device."""
        started = time.monotonic()
        try:
            flashed = self._write_and_verify(unit, command)
        except ProvisioningError as exc:
            self.agent.finished(unit.registration_id, None)
            self.agent.publish_event(
                FlashFailed(
                    registration_id=unit.registration_id,
                    station=self.config.name,
                    port=unit.port,
                    reason=str(exc),
                    retryable=True,
                )
            )
            raise
        self.agent.finished(unit.registration_id, flashed)
        self._assigned.setdefault(unit.registration_id, threading.Event())
        # The port now shows this unit, so the pipeline's `unit.notice` (assigned, overdue) reaches it.
        self.agent.stage(
            unit.port, "FLASHED", StageDetail("waiting for DPS", registration_id=unit.registration_id)
        )
        self.agent.publish_event(
            ConfigFlashed(
                registration_id=unit.registration_id,
                station=self.config.name,
                port=unit.port,
                config_sha256=flashed,
            )
        )
        with contextlib.suppress(StationError):  # the config is stored; a power cycle boots it as well
            self._driver(unit.port).reboot()
        return FlashOutcome(flashed, command.config_path, time.monotonic() - started)

    def wait_assigned(self, unit: IdentifiedUnit, timeout: float) -> float:
        """Wait until the pipeline says DPS assigned the flashed unit; return the seconds waited."""
        started = time.monotonic()
        event = self._assigned.setdefault(unit.registration_id, threading.Event())
        if not event.wait(timeout):
            last = self._last_word.get(unit.registration_id, "no word from the pipeline")
            raise ProvisioningError(
                f"DPS did not assign {unit.registration_id} within {timeout:g} s ({last}): check the "
                "device's network and that it booted with the flashed config"
            )
        return time.monotonic() - started

    def _write_and_verify(self, unit: IdentifiedUnit, command: FlashConfig) -> str:
        try:
            content = open_from_pipeline(
                self._keypair,
                command.envelope,
                station_name=self.config.name,
                registration_id=unit.registration_id,
            )
            if hashlib.sha256(content).hexdigest() != command.config_sha256:
                raise ProvisioningError("the config does not match the hash the pipeline announced")
            readback = self._driver(unit.port).write_config(command.config_path, content)
        except EnvelopeError as exc:
            raise ProvisioningError(f"cannot open the config: {exc}") from None
        except StationError as exc:
            raise ProvisioningError(str(exc)) from None
        if readback != command.config_sha256:
            raise ProvisioningError(f"read-back hash {readback[:12]}… differs from the config's")
        return readback

    def _driver(self, port: str) -> DeviceDriver:
        driver = self._drivers.get(port)
        if driver is None:
            driver = self._drivers[port] = self._open_driver(port)
        return driver
