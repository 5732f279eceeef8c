"""Identity at the station, on a whole line: a bad serial is refused, a replugged device is rework.

Real parts: a private Mosquitto, SQLite built by migrations, the emulator, the pipeline, a station with
simulated devices on pseudo-terminals.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Mosquitto
from line_helpers import Line, run_station, start_line, wait_for

from pipeline.domain.identity import DeviceIdentity
from stations.simulation.fleet import DeviceSpec

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[Line, ExitStack, Path]]:
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    run_id = secrets.token_hex(3)
    with ExitStack() as stack:
        stack.callback(broker.stop)
        started = start_line(
            stack,
            tmp_path,
            broker.url,
            run_id=run_id,
            client_id=f"identity-{run_id}",
            reconcile_stuck_seconds=5.0,
            # The replugged device may already be assigned when it is scanned again: let its own
            # station rework it (the default, "refuse", would need `edgeline unit release`).
            rework_assigned="allow",
        )
        yield started, stack, tmp_path


def test_a_device_reporting_an_invalid_serial_is_refused_with_the_reason(
    line: tuple[Line, ExitStack, Path],
) -> None:
    pipeline_line, stack, workdir = line
    bad = DeviceSpec(serial="007_888", mac="02:aa:00:00:00:01")
    run = run_station(stack, pipeline_line, "S1", workdir / "S1", [bad], poll_interval_seconds=0.2)

    wait_for(lambda: len(run.station.results) >= 1, 30, lambda: "the station's verdict")
    [result] = run.station.results
    assert result.outcome == "FAIL"
    assert "'_'" in result.reason and "serial" in result.reason
    assert pipeline_line.query("SELECT count(*) FROM units") == [(0,)]
    wait_for(
        lambda: pipeline_line.query("SELECT count(*) FROM audit_log WHERE kind = 'scan.rejected'") == [(1,)],
        30,
        lambda: "the refused scan in the audit log",
    )


def test_the_same_device_plugged_in_again_is_rework_not_a_new_unit(
    line: tuple[Line, ExitStack, Path],
) -> None:
    pipeline_line, stack, workdir = line
    device = DeviceSpec(serial="RW-0001", mac="02:bb:00:00:00:01")
    rid = DeviceIdentity.parse(device.serial, device.mac).registration_id()
    run = run_station(
        stack, pipeline_line, "S1", workdir / "S1", [device, device], fixtures=1, poll_interval_seconds=0.2
    )

    wait_for(lambda: len(run.station.results) >= 2, 60, lambda: f"two visits: {run.station.results}")
    assert [r.outcome for r in run.station.results] == ["PASS", "PASS"]
    wait_for(
        lambda: (
            pipeline_line.audit_count("unit.flashed", rid) == 2
            and pipeline_line.unit_state(rid) == "assigned"
        ),
        60,
        lambda: f"the reworked unit assigned again (state {pipeline_line.unit_state(rid)})",
    )
    assert pipeline_line.query("SELECT count(*), max(rework_count) FROM units") == [(1, 1)]
