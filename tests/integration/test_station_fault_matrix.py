"""Every simulator fault, for both drivers, against a whole line in-process (issue #4, first "must hold").

A station with simulated devices on real pseudo-terminals, the real pipeline (workers, SQLite by
migrations, the DPS + IoT Hub emulator) and a real Mosquitto. Without faults 4 devices of each driver
are provisioned end to end. With each fault switched on, the device ends PASS after retries or FAIL
with a reason naming the problem; and a failed device is never marked flashed: no `flashed`/`assigned`
unit, no `unit.flashed` audit record, no `config.flashed` event on the bus.

Faults are set before a device is plugged in and re-armed when it is scanned, so count-based faults
hit the flash (not only the identity query) deterministically. One broker, emulator and pipeline serve
the whole module; every test runs its own station (own name, key and port folder).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from conftest import Mosquitto
from line_helpers import Line, StationRun, register_station, run_station, start_line, wait_for

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from stations.drivers.line_protocol.simulator import Faults, SimulatedDevice
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, ConsoleFaults, SimulatedConsole
from stations.drivers.port import SimulatedUnit
from stations.drivers.registry import DriverFactory, load_driver_factory
from stations.runtime.results import PortResult
from stations.runtime.stages import Stage, StageDetail
from stations.simulation.fleet import DeviceSpec, make_devices

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(300),  # generous: CI runs the whole suite on 2 cores
]

AnyFaults: TypeAlias = Faults | ConsoleFaults
_station_numbers = itertools.count(1)


class ConfigFlashedSniffer:
    """Record the registration IDs of every `config.flashed` event a station publishes."""

    def __init__(self, mqtt_url: str, topic_root: str) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self._bus = PahoBus.from_url(mqtt_url, f"{topic_root}-sniffer", clean_session=True)
        self._bus.connect()
        self._bus.subscribe(f"{topic_root}/#", self._on_message)

    def _on_message(self, message: InboundMessage) -> None:
        if message.topic.endswith("/events/config.flashed"):
            with self._lock:
                self.payloads.append(message.payload)
        message.ack()

    def saw(self, registration_id: str) -> bool:
        """Whether any `config.flashed` event named this unit."""
        with self._lock:
            return any(registration_id.encode() in payload for payload in self.payloads)

    def close(self) -> None:
        self._bus.close()


@dataclass(frozen=True, slots=True)
class Setting:
    """The shared line, the sniffer on its bus, and a module-wide scratch folder."""

    line: Line
    sniffer: ConfigFlashedSniffer
    workdir: Path


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    workdir = tmp_path_factory.mktemp("fault-matrix")
    broker = Mosquitto(workdir)
    broker.start()
    try:
        with ExitStack() as stack:
            line = start_line(stack, workdir, broker.url, run_id="faults", client_id="faults-worker")
            sniffer = ConfigFlashedSniffer(broker.url, line.settings.topic_root)
            stack.callback(sniffer.close)
            yield Setting(line, sniffer, workdir)
    finally:
        broker.stop()


# --- drivers and faulty simulators --------------------------------------------------------------


class FaultyFactory:
    """Build simulators with `faults` switched on from the start; re-arm them when a unit is scanned."""

    def __init__(self, kind: type[SimulatedDevice] | type[SimulatedConsole], faults: AnyFaults) -> None:
        self._kind = kind
        self._template = faults
        self._armed: list[AnyFaults] = []
        self._lock = threading.Lock()

    def __call__(self, *identity: Any, **options: Any) -> SimulatedUnit:
        """Build one simulator (the `DeviceFactory` shape) with a fresh copy of the faults."""
        faults = replace(self._template)
        with self._lock:
            self._armed.append(faults)
        unit: SimulatedUnit = self._kind(*identity, faults=faults, **options)
        return unit

    def on_stage(self, port: str, stage: Stage, detail: StageDetail) -> None:
        """Stage hook: at `scanned` (identify done, flash not begun) re-arm the counted faults."""
        if stage != "scanned":
            return
        with self._lock:
            for faults in self._armed:
                for field in fields(self._template):
                    setattr(faults, field.name, getattr(self._template, field.name))


def _console_driver() -> DriverFactory:
    return load_driver_factory(
        "linux-console",
        username=DEFAULT_CREDENTIALS.username,
        password=DEFAULT_CREDENTIALS.password,
        # Roomy: the whole suite shares 2 cores; a fault that should pass must not fail on a busy machine.
        command_timeout=3.0,
        prompt_timeout=5.0,
    )


DRIVERS: dict[str, tuple[type[SimulatedDevice] | type[SimulatedConsole], Callable[[], DriverFactory]]] = {
    "line-protocol": (SimulatedDevice, lambda: load_driver_factory("line-protocol", baudrate=115_200)),
    "linux-console": (SimulatedConsole, _console_driver),
}


def _run(
    setting: Setting, driver: str, faults: AnyFaults, count: int, **config: Any
) -> tuple[StationRun, list[PortResult], ExitStack]:
    """Run a fresh station with `count` devices carrying `faults` until each has a result."""
    kind, make_driver = DRIVERS[driver]
    number = next(_station_numbers)
    name = f"FM{number:02d}"
    factory = FaultyFactory(kind, faults)
    devices: list[DeviceSpec] = make_devices(count, f"FM{number:03d}", bytes([0xF0, number]))
    stack = ExitStack()
    run = run_station(
        stack,
        setting.line,
        name,
        setting.workdir / name,
        devices,
        device_factory=factory,
        open_driver=make_driver(),
        on_stage=factory.on_stage,
        poll_interval_seconds=0.2,
        rescan_interval_seconds=2.0,
        flash_timeout_seconds=20.0,
        flash_attempts=1,
    )
    try:
        wait_for(
            lambda: len(run.station.results) >= count,
            90,
            lambda: f"{count} results from {name}; have {[r.human() for r in run.station.results]}",
        )
    except BaseException:
        stack.close()
        raise
    return run, list(run.station.results), stack


# --- no faults: 4 devices of each driver, end to end --------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_four_devices_are_provisioned_end_to_end(setting: Setting, driver: str) -> None:
    line = setting.line
    faults: AnyFaults = Faults() if driver == "line-protocol" else ConsoleFaults()
    _, results, stack = _run(setting, driver, faults, 4)
    with stack:
        assert [r.outcome for r in results] == ["PASS"] * 4, [r.human() for r in results]
        ids = [r.registration_id for r in results if r.registration_id]
        assert len(set(ids)) == 4
        wait_for(
            lambda: all(line.unit_state(i) == "assigned" for i in ids),
            90,
            lambda: f"4 assigned units; states {[line.unit_state(i) for i in ids]}",
        )
    assert all(line.audit_count("unit.flashed", i) == 1 for i in ids)


# --- every fault, one device each ---------------------------------------------------------------

# (driver, faults, expected outcome, words one of which the FAIL reason must contain)
CASES: dict[str, tuple[str, AnyFaults, str, tuple[str, ...]]] = {
    "lp-noise": ("line-protocol", Faults(noise=True), "PASS", ()),
    "lp-dropped-replies": ("line-protocol", Faults(drop_replies=2), "PASS", ()),
    "lp-duplicated-replies": ("line-protocol", Faults(duplicate_replies=True), "PASS", ()),
    "lp-corrupted-replies": ("line-protocol", Faults(corrupt_replies=2), "PASS", ()),
    "lp-slow-device": ("line-protocol", Faults(latency_s=0.3), "PASS", ()),
    "lp-disconnect-mid-flash": ("line-protocol", Faults(disconnect_after_chunks=1), "FAIL", ("lost",)),
    "lp-corrupted-write": ("line-protocol", Faults(corrupt_write=True), "FAIL", ("read-back", "sha-256")),
    "lp-wrong-hash": ("line-protocol", Faults(wrong_hash=True), "FAIL", ("read-back", "sha-256")),
    "lp-garbage-device": ("line-protocol", Faults(garbage=True), "FAIL", ("does not answer",)),
    "console-noise": ("linux-console", ConsoleFaults(noise=True), "PASS", ()),
    "console-dropped-lines": ("linux-console", ConsoleFaults(drop_lines=2), "PASS", ()),
    "console-duplicated-lines": ("linux-console", ConsoleFaults(duplicate_lines=True), "PASS", ()),
    "console-slow-device": ("linux-console", ConsoleFaults(latency_s=0.2), "PASS", ()),
    "console-login-retry": ("linux-console", ConsoleFaults(failed_logins=1), "PASS", ()),
    "console-disconnect-mid-flash": (
        "linux-console",
        ConsoleFaults(disconnect_after_chunks=1),
        "FAIL",
        ("lost", "vanished"),
    ),
    "console-corrupted-write": (
        "linux-console",
        ConsoleFaults(corrupt_write=True),
        "FAIL",
        ("read-back", "sha-256"),
    ),
    "console-wrong-hash": ("linux-console", ConsoleFaults(wrong_hash=True), "FAIL", ("read-back", "sha-256")),
}


@pytest.mark.parametrize(("driver", "faults", "outcome", "words"), CASES.values(), ids=CASES.keys())
def test_a_faulty_device_passes_after_retries_or_fails_with_the_reason(
    setting: Setting, driver: str, faults: AnyFaults, outcome: str, words: tuple[str, ...]
) -> None:
    line = setting.line
    _, results, stack = _run(setting, driver, faults, 1)
    with stack:
        (result,) = results
        assert result.outcome == outcome, result.human()
        unit = result.registration_id
        if outcome == "PASS":
            assert unit is not None
            wait_for(lambda: line.audit_count("unit.flashed", unit) == 1, 10, lambda: f"{unit} flashed")
            return
    reason = result.reason.lower()
    assert all(word in reason for word in words), result.human()
    if unit is None:  # never identified: no unit exists at all, let alone a flashed one
        assert line.query("SELECT count(*) FROM units WHERE station = ?", result.station) == [(0,)]
        return
    assert line.unit_state(unit) not in ("flashed", "assigned"), line.unit_state(unit)
    assert line.audit_count("unit.flashed", unit) == 0
    assert not setting.sniffer.saw(unit), "the station published config.flashed for an unverified write"


# --- the CLI path: `station run --simulate 4 --sim-driver linux-console` as its own process -----


def test_station_cli_provisions_four_simulated_consoles(setting: Setting) -> None:
    line = setting.line
    workdir = setting.workdir / "cli"
    key_file = register_station(line, "CLI1", workdir)
    env = {
        **os.environ,
        "EDGELINE_MQTT_URL": line.settings.mqtt_url,
        "EDGELINE_TOPIC_ROOT": line.settings.topic_root,
        "EDGELINE_LINE": line.settings.line,
    }
    command = [sys.executable, "-m", "pipeline.cli", "station", "run", "--simulate", "4"]
    command += ["--sim-driver", "linux-console", "--watch-dir", str(workdir / "ports"), "--name", "CLI1"]
    command += ["--key-file", str(key_file), "--serial-prefix", "CLI", "--line", line.settings.line]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 expected, 4 seen, 4 passed, 0 failed" in done.stdout, done.stdout[-2000:]
    wait_for(
        lambda: (
            line.query("SELECT count(*) FROM units WHERE station = 'CLI1' AND state = 'assigned'") == [(4,)]
        ),
        120,
        lambda: (
            f"4 assigned units of CLI1; {line.query('SELECT state FROM units WHERE station = ?', 'CLI1')}"
        ),
    )


def test_a_restarted_simulated_station_reuses_the_fixture_links_a_killed_run_left(setting: Setting) -> None:
    """Defect 6: a killed station left `fixture-*` links; the next run feeds every device and says so."""
    line = setting.line
    workdir = setting.workdir / "restart"
    key_file = register_station(line, "RS1", workdir)
    ports = workdir / "ports"
    ports.mkdir(parents=True)
    for index in (1, 2, 3):
        os.symlink(f"/dev/pts/gone-{index}", ports / f"fixture-{index:05d}")
    env = {
        **os.environ,
        "EDGELINE_MQTT_URL": line.settings.mqtt_url,
        "EDGELINE_TOPIC_ROOT": line.settings.topic_root,
        "EDGELINE_LINE": line.settings.line,
    }
    command = [sys.executable, "-m", "pipeline.cli", "station", "run", "--simulate", "3"]
    command += ["--watch-dir", str(ports), "--name", "RS1", "--key-file", str(key_file)]
    command += ["--serial-prefix", "RST", "--line", line.settings.line]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "3 expected, 3 seen, 3 passed, 0 failed" in done.stdout, done.stdout[-2000:]
