"""A broker outage in the middle of a line run loses and duplicates nothing (DESIGN §6, issue #4).

A station with 8 simulated devices on real pseudo-terminals, the real pipeline (workers, SQLite by
migrations, the DPS + IoT Hub emulator over HTTP) and a real Mosquitto, which is stopped for a few
seconds mid-run and started again. Meanwhile the station spools its scans and results on disk.
Afterwards every unit is assigned, there is one unit row per device, one `unit.flashed` audit record
per unit, and every device passed exactly once.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import RestartableMosquitto

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.bootstrap import Pipeline, build_pipeline
from pipeline.config import Settings
from pipeline.crypto.station_key import StationKeyPair
from pipeline.db import migrate
from pipeline.demo import DEMO_HUBS, demo_settings
from pipeline.emulator.server import EmulatorConfig, start_emulator
from pipeline.service.unit_of_work import StationRecord
from stations.config import StationConfig
from stations.fleet import SimulatedFleet, make_devices
from stations.runtime import StationProcess, start_station

UNITS = 8
pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(180),
]


def _wait(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.2)


@pytest.fixture
def line(tmp_path: Path, restartable_mosquitto: RestartableMosquitto) -> Iterator[tuple[Pipeline, Settings]]:
    with ExitStack() as stack:
        emulator = start_emulator(EmulatorConfig(id_scope="0ne00OUTAGE", hubs=DEMO_HUBS))
        stack.callback(emulator.stop)
        settings = demo_settings(
            Settings(),
            workdir=tmp_path,
            broker_url=restartable_mosquitto.url,
            embedded=False,
            run_id="outage",
            emulator=emulator,
        )
        migrate.upgrade(settings.resolved_database_url())
        hub = AzureHubRegistry(
            {name: emulator.hub_connection_string(name) for name in DEMO_HUBS}, verify=emulator.ca_file
        )
        # A persistent session, as `edgeline up` has: what is queued for it survives the restart.
        pipeline = build_pipeline(settings, client_id="outage-worker", clean_session=False, hub=hub)
        stack.callback(pipeline.stop)
        pipeline.start()
        yield pipeline, settings


def _station(stack: ExitStack, pipeline: Pipeline, settings: Settings, tmp: Path) -> StationProcess:
    keypair = StationKeyPair.generate()
    key_file = keypair.save(tmp / "S1.key")
    with pipeline.db.uow() as uow:
        record = StationRecord("S1", settings.line, keypair.public_bytes(), datetime.now(UTC))
        uow.stations.put(record)
        uow.commit()
    registrar = HttpDeviceRegistrar(poll_interval=0.2, max_poll_interval=0.5)
    stack.callback(registrar.close)
    fleet = SimulatedFleet(
        make_devices(UNITS, "OUTAGE", b"\x0a\x0b"), tmp / "ports", tmp / "devices", registrar, fixtures=4
    )
    config = StationConfig(
        name="S1",
        line=settings.line,
        key_file=key_file,
        topic_root=settings.topic_root,
        poll_interval_seconds=0.2,
        rescan_interval_seconds=3.0,
    )
    station = start_station(
        config, settings.mqtt_url, watch_dir=tmp / "ports", client_id="outage-S1", on_result=fleet.on_result
    )
    stack.callback(station.stop)
    stack.callback(fleet.stop)
    fleet.start()
    return station


def test_a_broker_outage_mid_run_loses_and_duplicates_nothing(
    line: tuple[Pipeline, Settings], restartable_mosquitto: RestartableMosquitto, tmp_path: Path
) -> None:
    pipeline, settings = line

    def counts() -> dict[str, int]:
        with pipeline.db.uow() as uow:
            return uow.units.count_by_state()

    with ExitStack() as stack:
        station = _station(stack, pipeline, settings, tmp_path)
        _wait(lambda: sum(counts().values()) >= 2, 60, lambda: f"the first scans; states {counts()}")
        restartable_mosquitto.restart_after(4.0)  # the line keeps working: scans/results spooled meanwhile
        _wait(
            lambda: counts().get("assigned", 0) == UNITS and len(station.results) >= UNITS,
            150,
            lambda: f"{UNITS} assigned units; states {counts()}, {len(station.results)} results",
        )
        assert len(station.agent.spool) == 0
        results = list(station.results)
    assert [r.outcome for r in results] == ["PASS"] * UNITS, [r.human() for r in results]
    assert len({r.registration_id for r in results}) == UNITS
    with sqlite3.connect(settings.resolved_database_url().removeprefix("sqlite:///")) as db:
        units = db.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall()
        flashed = db.execute(
            "SELECT registration_id, count(*) FROM audit_log WHERE kind = 'unit.flashed' "
            "GROUP BY registration_id"
        ).fetchall()
    assert units == [("assigned", UNITS)]
    assert len(flashed) == UNITS and all(n == 1 for _, n in flashed), flashed
