"""One worker per port: wait for a device, scan it, flash its config, verify, report PASS/FAIL.

A device that stays plugged in after it passed is not scanned again; a device that is unplugged and
plugged in again is rework (a new scan of the same identity). A busy or vanished port is reported in
one line and retried, never a traceback.
Not responsible for: the command set (the driver) or bus plumbing (the agent).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.crypto.envelope import EnvelopeError, open_from_pipeline
from pipeline.domain.events import (
    ConfigFlashed,
    FlashConfig,
    FlashFailed,
    ScanRejected,
    UnitRefused,
    UnitScanned,
)
from pipeline.domain.identity import DeviceIdentity, IdentityError
from stations.drivers.port import DeviceDriver, DriverFactory
from stations.errors import LinkError, StationError
from stations.runtime.agent import Command, StationAgent
from stations.runtime.results import PortResult
from stations.runtime.spool import SpoolError
from stations.runtime.stages import StageDetail

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Visit:
    """One device's visit to the port."""

    port: str
    started: float
    registration_id: str | None = None
    serial: str | None = None
    mac: str | None = None


class PortWorker(threading.Thread):
    """Serves one port until `stop` is set or `still_present()` says the port is gone."""

    def __init__(
        self,
        agent: StationAgent,
        port: str,
        open_driver: DriverFactory,
        still_present: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(name=f"port-{port}", daemon=True)
        self.agent = agent
        self.port = port
        self._open_driver = open_driver
        self._still_present = still_present
        self._last_identity: tuple[str, str] | None = None
        self._link_problem: str | None = None

    def run(self) -> None:
        while not self.agent.stopping.is_set() and self._still_present():
            try:
                driver = self._open_driver(self.port)
            except LinkError as exc:
                self._device_absent(str(exc))
                continue
            try:
                self._serve(driver)
            except LinkError as exc:
                self._device_absent(str(exc))
            except SpoolError as exc:  # the event was not recorded: the unit must be scanned again
                log.error("station %s port %s: %s", self.agent.config.name, self.port, exc)
                self.agent.stage(self.port, "FAIL", StageDetail(text=str(exc)))
                self._last_identity = None
                self.agent.stopping.wait(self.agent.config.poll_interval_seconds)
            finally:
                driver.close()

    def _device_absent(self, problem: str) -> None:
        if problem != self._link_problem:
            log.info("station %s port %s: %s", self.agent.config.name, self.port, problem)
            self._link_problem = problem
            self.agent.stage(self.port, "waiting", StageDetail(text=problem))
        self._last_identity = None  # unplugged: the next scan of the same device is rework
        self.agent.stopping.wait(self.agent.config.poll_interval_seconds)

    def _serve(self, driver: DeviceDriver) -> None:
        visit = _Visit(port=self.port, started=time.monotonic())
        if self._last_identity is None:
            self.agent.stage(self.port, "identifying")
        try:
            info = driver.identify()
            seen = (info.serial, info.mac)
        except LinkError:
            raise
        except StationError as exc:  # a device that answers, but not sensibly (garbage, errors)
            seen = ("unreadable", str(exc))
            if seen != self._last_identity:
                self._last_identity = seen
                self._reject(visit, f"device does not answer the identity query sensibly: {exc}", None, None)
            self.agent.stopping.wait(self.agent.config.poll_interval_seconds)
            return
        self._link_problem = None
        if seen == self._last_identity:
            self.agent.stopping.wait(self.agent.config.poll_interval_seconds)  # same device, already done
            return
        self._last_identity = seen
        try:
            identity = DeviceIdentity.parse(info.serial, info.mac, self.agent.config.mac_policy)
            visit.registration_id = identity.registration_id(self.agent.config.registration_id_template)
        except IdentityError as exc:
            self._reject(visit, str(exc), info.serial, info.mac)
            return
        visit.serial, visit.mac = identity.serial, identity.mac
        self._provision(driver, visit)

    def _reject(self, visit: _Visit, reason: str, serial: str | None, mac: str | None) -> None:
        cfg = self.agent.config
        self.agent.publish_event(
            ScanRejected(
                line=cfg.line,
                station=cfg.name,
                port=self.port,
                reason=reason,
                raw_serial=_clip(serial),
                raw_mac=_clip(mac),
            )
        )
        self._finish(visit, "FAIL", reason)

    def _provision(self, driver: DeviceDriver, visit: _Visit) -> None:
        cfg = self.agent.config
        assert visit.registration_id is not None and visit.serial is not None and visit.mac is not None
        inbox = self.agent.expect(visit.registration_id, visit.mac)
        flashed: str | None = None
        scan = UnitScanned(
            registration_id=visit.registration_id,
            serial=visit.serial,
            mac=visit.mac,
            line=cfg.line,
            station=cfg.name,
            port=self.port,
            product=cfg.product,
            batch=cfg.batch,
        )
        scanned_at = datetime.now(UTC)  # the CloudEvent time: a re-sent scan keeps the moment of scanning
        try:
            scan_id = self.agent.publish_event(scan, at=scanned_at)
            self.agent.stage(
                self.port,
                "scanned",
                StageDetail("waiting for the config", visit.serial, visit.mac, visit.registration_id),
            )
            flashed = self._flash_loop(
                driver, visit, inbox, lambda: self.agent.publish_event(scan, event_id=scan_id, at=scanned_at)
            )
        finally:
            self.agent.finished(visit.registration_id, flashed)

    def _flash_loop(
        self,
        driver: DeviceDriver,
        visit: _Visit,
        inbox: queue.Queue[Command],
        resend_scan: Callable[[], object],
    ) -> str | None:
        cfg = self.agent.config
        deadline = time.monotonic() + cfg.flash_timeout_seconds
        for attempt in range(1, cfg.flash_attempts + 1):
            command = self._next_command(inbox, deadline, resend_scan)
            if command is None:
                reason = (
                    "station stopped before the config arrived"
                    if self.agent.stopping.is_set()
                    else f"no config arrived from the pipeline within {cfg.flash_timeout_seconds:g} s: "
                    "check `edgeline up` and the broker"
                )
                self._finish(visit, "FAIL", reason)
                return None
            if isinstance(command, UnitRefused):  # told at once: no waiting out the timeout, no re-sends
                self._finish(visit, "FAIL", refusal_text(command))
                return None
            outcome = self._flash_once(driver, visit, command)
            if outcome is None:
                return command.config_sha256
            reason, retryable = outcome
            self.agent.publish_event(
                FlashFailed(
                    registration_id=command.registration_id,
                    station=cfg.name,
                    port=self.port,
                    reason=reason,
                    retryable=retryable,
                )
            )
            if not retryable or attempt == cfg.flash_attempts:
                self._finish(visit, "FAIL", reason)
                return None
        return None

    def _next_command(
        self, inbox: queue.Queue[Command], deadline: float, resend_scan: Callable[[], object]
    ) -> Command | None:
        """Wait for the unit's flash command or refusal, re-sending the scan now and then; None on timeout."""
        stopping = self.agent.stopping
        next_resend = time.monotonic() + self.agent.config.rescan_interval_seconds
        while not stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_resend:
                resend_scan()
                next_resend = now + self.agent.config.rescan_interval_seconds
            try:
                return inbox.get(timeout=min(deadline - now, 0.5))
            except queue.Empty:
                continue
        return None

    def _flash_once(
        self, driver: DeviceDriver, visit: _Visit, command: FlashConfig
    ) -> tuple[str, bool] | None:
        """Write and verify one config; None on success, else (reason, retryable)."""
        cfg = self.agent.config
        try:
            content = open_from_pipeline(
                self.agent.keypair,
                command.envelope,
                station_name=cfg.name,
                registration_id=command.registration_id,
            )
        except EnvelopeError as exc:
            return f"cannot open the config: {exc}", False
        if hashlib.sha256(content).hexdigest() != command.config_sha256:
            return "the config does not match the hash the pipeline announced", False
        self.agent.stage(self.port, "flashing", StageDetail(f"writing {command.config_path}"))
        try:
            readback = driver.write_config(command.config_path, content)
        except LinkError as exc:
            # The device went away mid-flash: report it, then let the worker wait for a replug.
            self.agent.publish_event(
                FlashFailed(
                    registration_id=command.registration_id,
                    station=self.agent.config.name,
                    port=self.port,
                    reason=f"port lost during flash: {exc}",
                    retryable=True,
                )
            )
            self._finish(visit, "FAIL", f"port lost during flash: {exc}")
            raise
        except StationError as exc:
            return str(exc), exc.retryable
        self.agent.stage(self.port, "verifying", StageDetail("comparing the read-back SHA-256"))
        if readback != command.config_sha256:  # the driver verifies too; never trust a single check
            return f"read-back hash {readback[:12]}… differs from the config's", True
        self.agent.publish_event(
            ConfigFlashed(
                registration_id=command.registration_id,
                station=cfg.name,
                port=self.port,
                config_sha256=readback,
                edge_check=_edge_check(driver),
            )
        )
        try:
            driver.reboot()
        except StationError as exc:
            log.warning(
                "station %s port %s: reboot failed (%s); power-cycle the device", cfg.name, self.port, exc
            )
        # The station's part is done, the unit is not: DPS has yet to assign it (a unit.notice says so).
        self._finish(visit, "PASS", "config written and verified; waiting for DPS to assign the device")
        return None

    def _finish(self, visit: _Visit, outcome: str, reason: str) -> None:
        detail = StageDetail(reason, visit.serial, visit.mac, visit.registration_id)
        self.agent.stage(self.port, "FLASHED" if outcome == "PASS" else "FAIL", detail)
        self.agent.report(
            PortResult(
                station=self.agent.config.name,
                port=self.port,
                outcome="PASS" if outcome == "PASS" else "FAIL",
                reason=reason,
                registration_id=visit.registration_id,
                serial=visit.serial,
                mac=visit.mac,
                elapsed_seconds=time.monotonic() - visit.started,
            )
        )


def refusal_text(refusal: UnitRefused) -> str:
    """The operator's one-line reason for a unit the pipeline refused."""
    return f"{refusal.kind} by the pipeline: {refusal.reason}"


def _edge_check(driver: object) -> str | None:
    """The summary of device-side IoT Edge checks, for drivers that ran them (linux-console)."""
    outcome = getattr(driver, "last_edge_check", None)
    summary = getattr(outcome, "summary", None)
    return summary[:1000] if isinstance(summary, str) else None


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:128]
