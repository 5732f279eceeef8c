"""A fleet of simulated devices for the demo and for `edgeline station run --simulate N` (POSIX only).

Devices are "plugged" into a station's watched port folder a few at a time (one per fixture), each on
its own real pseudo-terminal; when the station reports the device's result it is "unplugged", and a
flashed device "boots" and registers with DPS using the key in its flashed config.
Not responsible for: the device protocol (`stations.drivers.line_protocol.simulator`) or the station logic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.azure.ports import DeviceRegistrar, DeviceRegistrationResult
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.drivers.port import DeviceFactory, SimulatedUnit
from stations.runtime.results import PortResult
from stations.simulation.boot import BootError, EdgeRuntime, ProvisioningRetry, boot

log = logging.getLogger(__name__)
REBOOT_WAIT_SECONDS = 10.0  # how long the simulated operator waits for a passed device to start rebooting
BootSink = Callable[[str, DeviceRegistrationResult], None]
FIXTURE_PREFIX = "fixture-"


@dataclass(slots=True)
class FleetTally:
    """What became of the fleet's devices: expected, seen (a station result came back), passed, failed."""

    expected: int
    passed: int = 0
    failed: int = 0
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def seen(self) -> int:
        return self.passed + self.failed

    def record(self, passed: bool) -> None:
        with self._lock:
            if passed:
                self.passed += 1
            else:
                self.failed += 1

    def summary(self) -> str:
        """One line; never calls a run good when devices were never seen."""
        unseen = max(0, self.expected - self.seen)
        line = f"{self.expected} expected, {self.seen} seen, {self.passed} passed, {self.failed} failed"
        return line + (f", {unseen} never seen" if unseen else "")


def _replace_link(target: str, link: Path) -> None:
    """Point `link` at `target`, replacing a leftover link of the same name.

    (No temporary link + rename: the station watches this folder and would serve the temporary name.)
    """
    if link.is_symlink():
        log.warning("replacing stale fixture link %s", link)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
    os.symlink(target, link)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated unit: what it will report over serial."""

    serial: str
    mac: str
    model: str = "EDGE-SIM-1"
    firmware: str = "1.0.0"


def make_devices(count: int, serial_prefix: str, mac_prefix: bytes) -> list[DeviceSpec]:
    """`count` distinct simulated units: serials PREFIX-00000…, locally administered MACs 02:xx:xx:<index>."""
    if len(mac_prefix) != 2:
        raise ValueError("mac_prefix must be 2 bytes")
    devices = []
    for index in range(count):
        octets = (0x02, *mac_prefix, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
        devices.append(
            DeviceSpec(serial=f"{serial_prefix}-{index:05d}", mac=":".join(f"{o:02x}" for o in octets))
        )
    return devices


class SimulatedFleet:
    """Feeds devices to a station's watched folder, `fixtures` at a time."""

    def __init__(
        self,
        devices: list[DeviceSpec],
        watch_dir: Path,
        flash_root: Path,
        registrar: DeviceRegistrar,
        *,
        fixtures: int = 4,
        baud: int | None = None,
        on_boot: BootSink | None = None,
        folder_name: Callable[[DeviceSpec], str] = lambda spec: spec.serial,
        device_factory: DeviceFactory = SimulatedDevice,
        provisioning_retry: ProvisioningRetry | None = None,
        runtime: EdgeRuntime | None = None,
    ) -> None:
        self._pending = list(reversed(devices))
        self._watch_dir = watch_dir
        self._flash_root = flash_root
        self._registrar = registrar
        self._fixtures = threading.Semaphore(fixtures)
        self._baud = baud
        self._on_boot = on_boot
        self._folder_name = folder_name
        self._device_factory = device_factory
        self._retry = provisioning_retry
        self._runtime = runtime
        self._plugged: dict[str, SimulatedUnit] = {}
        self._rebooting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="fleet", daemon=True)
        self.boot_threads: list[threading.Thread] = []
        self.tally = FleetTally(expected=len(devices))

    def prepare(self) -> int:
        """Create the watched folder and remove fixture links a killed earlier run left; return how many.

        Call before the station starts watching the folder: a stale link points at a pseudo-terminal
        that no longer exists, and a new device must be able to take its name.
        """
        self._watch_dir.mkdir(parents=True, exist_ok=True)
        removed = 0
        for link in self._watch_dir.glob(f"{FIXTURE_PREFIX}*"):
            if link.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                removed += 1
        return removed

    def start(self) -> None:
        self.prepare()
        self._thread.start()

    @property
    def feeding_error(self) -> str | None:
        """Why the feeding thread died, or None while it is alive or ended normally."""
        return self.tally.error

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            plugged = list(self._plugged)
        for link in plugged:
            self._unplug(link)

    def wait_for_boots(self, timeout: float) -> int:
        """Wait for flashed devices to finish registering with DPS; return how many are still at it.

        Boots run on daemon threads, so a process that exits without waiting would cut a device off
        in the middle of its registration.
        """
        deadline = time.monotonic() + timeout
        for thread in list(self.boot_threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self.boot_threads)

    def on_result(self, result: PortResult) -> None:
        """Station result sink: the operator takes the device off the fixture.

        After a PASS the operator waits for the device to start rebooting (a console device may take a
        moment to read the reboot command the station already sent); a FAIL comes off at once.
        """
        with self._lock:
            ours = result.port in self._plugged
        if ours:
            self.tally.record(result.outcome == "PASS")
        if result.outcome == "PASS":
            with self._lock:
                rebooting = self._rebooting.get(result.port)
            if rebooting is not None and not rebooting.wait(REBOOT_WAIT_SECONDS):
                log.warning(
                    "simulated device on %s did not reboot within %g s", result.port, REBOOT_WAIT_SECONDS
                )
        self._unplug(result.port)

    def _feed(self) -> None:
        try:
            self._feed_all()
        except Exception as exc:  # the thread must not end silently: the station process reports it
            self.tally.error = f"{type(exc).__name__}: {exc}"
            log.error("simulated fleet stopped feeding devices: %s", self.tally.error)

    def _feed_all(self) -> None:
        index = 0
        while self._pending and not self._stop.is_set():
            if not self._fixtures.acquire(timeout=0.5):
                continue
            spec = self._pending.pop()
            index += 1
            self._plug(spec, self._watch_dir / f"{FIXTURE_PREFIX}{index:05d}")

    def _plug(self, spec: DeviceSpec, link: Path) -> None:
        flash_dir = self._flash_root / self._folder_name(spec)
        device = self._device_factory(
            serial=spec.serial,
            mac=spec.mac,
            model=spec.model,
            firmware=spec.firmware,
            flash_dir=flash_dir,
            on_boot=self._booter(spec, rebooting := threading.Event()),
            baud=self._baud,
        )
        device.start()
        with self._lock:
            self._plugged[str(link)] = device
            self._rebooting[str(link)] = rebooting
        _replace_link(device.port, link)

    def _unplug(self, link: str) -> None:
        with self._lock:
            device = self._plugged.pop(link, None)
            self._rebooting.pop(link, None)
        if device is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        device.stop()
        self._fixtures.release()

    def _booter(self, spec: DeviceSpec, rebooting: threading.Event) -> Callable[[Path], None]:
        def on_boot(flash_dir: Path) -> None:
            rebooting.set()
            thread = threading.Thread(
                target=self._boot, args=(spec, flash_dir), name=f"boot-{spec.serial}", daemon=True
            )
            self.boot_threads.append(thread)
            thread.start()

        return on_boot

    def _boot(self, spec: DeviceSpec, flash_dir: Path) -> None:
        try:
            result = boot(
                flash_dir, self._registrar, retry=self._retry, stop=self._stop, runtime=self._runtime
            )
        except BootError as exc:
            log.warning("simulated device %s: %s", spec.serial, exc)
            result = DeviceRegistrationResult(
                status="failed", assigned_hub=None, device_id=None, error_message=str(exc)
            )
        if self._on_boot is not None:
            self._on_boot(spec.serial, result)
