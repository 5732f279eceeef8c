"""A whole provisioning line in-process, for station integration tests (real parts only, no mocks).

Responsible for: starting the DPS + IoT Hub emulator and the pipeline (SQLite built by migrations,
workers on a real broker), registering a station, running it against a `SimulatedFleet`, and
reading unit states and audit records back from the database.
Not responsible for: the broker (the caller brings a Mosquitto) or asserting anything.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.bootstrap import Pipeline, build_pipeline
from pipeline.config import Settings
from pipeline.crypto.station_key import StationKeyPair
from pipeline.db import migrate
from pipeline.demo import DEMO_HUBS, demo_settings
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator
from pipeline.service.unit_of_work import StationRecord
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.drivers.port import DeviceDriver, DeviceFactory
from stations.runtime.config import StationConfig
from stations.runtime.process import StationProcess, start_station
from stations.runtime.stages import StageHook
from stations.simulation.boot import EdgeRuntime
from stations.simulation.fleet import DeviceSpec, SimulatedFleet


def wait_for(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    """Poll `condition` every 0.2 s; fail with `what()` (evaluated late: current states) on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Line:
    """A running pipeline with its settings and the emulator it enrolls devices in."""

    pipeline: Pipeline
    settings: Settings
    emulator: RunningEmulator

    @property
    def db_path(self) -> str:
        return self.settings.resolved_database_url().removeprefix("sqlite:///")

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one read-only SQL statement on the line's SQLite database."""
        with sqlite3.connect(self.db_path) as db:
            return db.execute(sql, params).fetchall()

    def states(self) -> dict[str, int]:
        """Units per state."""
        with self.pipeline.db.uow() as uow:
            return uow.units.count_by_state()

    def unit_state(self, registration_id: str) -> str | None:
        """The unit's state, or None if there is no such unit."""
        rows = self.query("SELECT state FROM units WHERE registration_id = ?", registration_id)
        return rows[0][0] if rows else None

    def audit_count(self, kind: str, registration_id: str) -> int:
        """How many audit records of `kind` the unit has."""
        rows = self.query(
            "SELECT count(*) FROM audit_log WHERE kind = ? AND registration_id = ?", kind, registration_id
        )
        return int(rows[0][0])


def start_line(
    stack: ExitStack,
    workdir: Path,
    broker_url: str,
    *,
    run_id: str,
    client_id: str,
    clean_session: bool = False,
    **overrides: Any,
) -> Line:
    """Start emulator + pipeline (SQLite by migrations) on `broker_url`; stopped when `stack` closes.

    `overrides` replace `Settings` fields after the demo defaults (e.g. shorter reconcile times).
    """
    emulator = start_emulator(EmulatorConfig(id_scope=f"0ne00{run_id.upper()[:6]}", hubs=DEMO_HUBS))
    stack.callback(emulator.stop)
    settings = demo_settings(
        Settings(), workdir=workdir, broker_url=broker_url, embedded=False, run_id=run_id, emulator=emulator
    )
    settings = replace(settings, **overrides)
    migrate.upgrade(settings.resolved_database_url())
    hub = AzureHubRegistry(
        {name: emulator.hub_connection_string(name) for name in DEMO_HUBS}, verify=emulator.ca_file
    )
    # A persistent session, as `edgeline up` has: what is queued for it survives a broker restart.
    pipeline = build_pipeline(settings, client_id=client_id, clean_session=clean_session, hub=hub)
    stack.callback(pipeline.stop)
    pipeline.start()
    return Line(pipeline, settings, emulator)


def register_station(line: Line, name: str, key_dir: Path) -> Path:
    """Generate a station key pair, register the station with the pipeline; return the key file."""
    keypair = StationKeyPair.generate()
    key_dir.mkdir(parents=True, exist_ok=True)
    key_file = keypair.save(key_dir / f"{name}.key")
    with line.pipeline.db.uow() as uow:
        uow.stations.put(StationRecord(name, line.settings.line, keypair.public_bytes(), datetime.now(UTC)))
        uow.commit()
    return key_file


@dataclass(frozen=True, slots=True)
class StationRun:
    """A running station with the fleet feeding it."""

    station: StationProcess
    fleet: SimulatedFleet


def run_station(
    stack: ExitStack,
    line: Line,
    name: str,
    workdir: Path,
    devices: list[DeviceSpec],
    *,
    fixtures: int = 4,
    device_factory: DeviceFactory = SimulatedDevice,
    open_driver: Callable[[str], DeviceDriver] | None = None,
    on_stage: StageHook | None = None,
    runtime: EdgeRuntime | None = None,
    **config: Any,
) -> StationRun:
    """Register station `name`, start it on `workdir/ports` and plug `devices` in; stopped with `stack`.

    `config` sets `StationConfig` fields (e.g. short poll intervals and flash timeouts).
    """
    key_file = register_station(line, name, workdir)
    registrar = HttpDeviceRegistrar(poll_interval=0.2, max_poll_interval=0.5)
    stack.callback(registrar.close)
    fleet = SimulatedFleet(
        devices,
        workdir / "ports",
        workdir / "devices",
        registrar,
        fixtures=fixtures,
        device_factory=device_factory,
        runtime=runtime,
    )
    station_config = StationConfig(
        name=name,
        line=line.settings.line,
        key_file=key_file,
        topic_root=line.settings.topic_root,
        **config,
    )
    station = start_station(
        station_config,
        line.settings.mqtt_url,
        watch_dir=workdir / "ports",
        client_id=f"{line.settings.topic_root}-{name}",
        on_result=fleet.on_result,
        open_driver=open_driver,
        on_stage=on_stage,
    )
    stack.callback(_join_boots, fleet)  # before the registrar closes: devices still registering
    stack.callback(station.stop)
    stack.callback(fleet.stop)
    fleet.start()
    return StationRun(station, fleet)


def _join_boots(fleet: SimulatedFleet, timeout: float = 10.0) -> None:
    """Let flashed devices finish registering with DPS (they run on their own threads)."""
    fleet.wait_for_boots(timeout)
