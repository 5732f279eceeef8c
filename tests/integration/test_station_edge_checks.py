"""The whole line with both edge options: device-side checks at the station, then `online` from the hub.

Real parts: Mosquitto, the pipeline on SQLite, the emulator over HTTPS, linux-console devices on
pseudo-terminals answering `iotedge system status` / `iotedge check`, and their simulated IoT Edge runtime
reporting to the emulated hub after DPS assigned them.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Mosquitto
from line_helpers import Line, run_station, start_line, wait_for

from pipeline.azure.hub_device import HttpModuleReporter
from pipeline.demo import DEMO_HUBS
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, ConsoleFaults, SimulatedConsole
from stations.drivers.registry import load_driver_factory
from stations.simulation.edge_runtime import SimulatedEdgeRuntime
from stations.simulation.fleet import make_devices

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated consoles need POSIX pseudo-terminals"),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Line, Path, ExitStack]]:
    workdir = tmp_path_factory.mktemp("edge-line")
    broker = Mosquitto(workdir)
    broker.start()
    try:
        with ExitStack() as stack:
            started = start_line(
                stack, workdir, broker.url, run_id="edgechk", client_id="edgechk-worker", online_check=True
            )
            yield started, workdir, stack
    finally:
        broker.stop()


def _run(
    line: tuple[Line, Path, ExitStack], name: str, faults: ConsoleFaults, number: int
) -> tuple[list[str], list[str]]:
    """Run station `name` with two console devices; return their registration IDs and `outcome reason`s."""
    pipeline_line, workdir, stack = line
    emulator = pipeline_line.emulator
    reporter = HttpModuleReporter(
        {hub: f"https://127.0.0.1:{emulator.hub_port(hub)}" for hub in DEMO_HUBS}, verify=emulator.ca_file
    )
    stack.callback(reporter.close)
    driver = load_driver_factory(
        "linux-console",
        username=DEFAULT_CREDENTIALS.username,
        password=DEFAULT_CREDENTIALS.password,
        command_timeout=3.0,
        prompt_timeout=5.0,
        apply=True,
        edge_checks=True,
    )
    run = run_station(
        stack,
        pipeline_line,
        name,
        workdir / name,
        make_devices(2, name, bytes([0xEC, number])),
        device_factory=functools.partial(SimulatedConsole, faults=faults),
        open_driver=driver,
        runtime=SimulatedEdgeRuntime(reporter, "running"),
        poll_interval_seconds=0.2,
        flash_timeout_seconds=30.0,
        flash_attempts=1,
    )
    wait_for(lambda: len(run.station.results) >= 2, 120, lambda: f"2 results from {name}")
    return [r.registration_id or "" for r in run.station.results], [
        f"{r.outcome} {r.reason}" for r in run.station.results
    ]


def test_checked_devices_pass_with_the_summary_recorded_and_come_online(
    line: tuple[Line, Path, ExitStack],
) -> None:
    pipeline_line = line[0]
    ids, results = _run(line, "EC1", ConsoleFaults(), 1)
    assert all(r.startswith("PASS") for r in results), results
    wait_for(  # the station reports PASS once config.flashed is sent; the pipeline records it soon after
        lambda: all(pipeline_line.audit_count("unit.flashed", i) == 1 for i in ids),
        60,
        lambda: "a unit.flashed record per unit",
    )
    for rid in ids:
        [(detail,)] = pipeline_line.query(
            "SELECT detail FROM audit_log WHERE kind = 'unit.flashed' AND registration_id = ?", rid
        )
        assert json.loads(detail)["edge_check"] == "5 aziot services up; iotedge check: 3 ok, 1 warning"
    wait_for(
        lambda: all(pipeline_line.unit_state(i) == "online" for i in ids),
        90,
        lambda: f"online units; states {[pipeline_line.unit_state(i) for i in ids]}",
    )


def test_failed_device_check_fails_the_unit_in_the_checks_words(line: tuple[Line, Path, ExitStack]) -> None:
    pipeline_line = line[0]
    ids, results = _run(line, "EC2", ConsoleFaults(edge_runtime_error=True), 2)
    assert all(r.startswith("FAIL IoT Edge check failed: aziot-edged is Stopped") for r in results), results
    wait_for(
        lambda: all(pipeline_line.unit_state(i) == "failed" for i in ids),
        60,
        lambda: f"failed units; states {[pipeline_line.unit_state(i) for i in ids]}",
    )
    for rid in ids:
        [(stage, reason)] = pipeline_line.query(
            "SELECT failure_stage, failure_reason FROM units WHERE registration_id = ?", rid
        )
        assert stage == "flash" and "host-connect-dps-endpoint: error" in reason
