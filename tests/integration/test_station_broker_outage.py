"""A broker outage in the middle of a line run loses and duplicates nothing (architecture §6, issue #4).

A station with 8 simulated devices on real pseudo-terminals, the real pipeline (workers, SQLite by
migrations, the DPS + IoT Hub emulator over HTTP) and a real Mosquitto, which is stopped for a few
seconds mid-run and started again. Meanwhile the station spools its scans and results on disk.
Afterwards every unit is assigned, there is one unit row per device, one `unit.flashed` audit record
per unit, and every device passed exactly once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import RestartableMosquitto
from line_helpers import Line, run_station, start_line, wait_for

from stations.simulation.fleet import make_devices

UNITS = 8
pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(180),
]


@pytest.fixture
def line(tmp_path: Path, restartable_mosquitto: RestartableMosquitto) -> Iterator[Line]:
    with ExitStack() as stack:
        yield start_line(
            stack, tmp_path, restartable_mosquitto.url, run_id="outage", client_id="outage-worker"
        )


def test_a_broker_outage_mid_run_loses_and_duplicates_nothing(
    line: Line, restartable_mosquitto: RestartableMosquitto, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        run = run_station(
            stack,
            line,
            "S1",
            tmp_path,
            make_devices(UNITS, "OUTAGE", b"\x0a\x0b"),
            poll_interval_seconds=0.2,
            rescan_interval_seconds=3.0,
        )
        station = run.station
        wait_for(
            lambda: sum(line.states().values()) >= 2, 60, lambda: f"the first scans; states {line.states()}"
        )
        restartable_mosquitto.restart_after(4.0)  # the line keeps working: scans/results spooled meanwhile
        # Every unit assigned, every station result in, and every verified flash acknowledged by the
        # pipeline (the confirmer may take DPS's word while a held result is still on its way).
        wait_for(
            lambda: (
                line.states().get("assigned", 0) == UNITS
                and len(station.results) >= UNITS
                and not station.agent.spool.held()
            ),
            150,
            lambda: (
                f"{UNITS} assigned units; states {line.states()}, {len(station.results)} results, "
                f"{len(station.agent.spool.held())} flash results unacknowledged"
            ),
        )
        assert len(station.agent.spool) == 0
        results = list(station.results)
    assert [r.outcome for r in results] == ["PASS"] * UNITS, [r.human() for r in results]
    assert len({r.registration_id for r in results}) == UNITS
    units = line.query("SELECT state, count(*) FROM units GROUP BY state")
    # One verified read-back per unit: `unit.flashed`, or `flash.verified` when the station's result was
    # held up by the outage long enough for the confirmer to take DPS's word first.
    flashed = line.query(
        "SELECT registration_id, count(*) FROM audit_log WHERE kind IN ('unit.flashed', 'flash.verified') "
        "GROUP BY registration_id"
    )
    assert units == [("assigned", UNITS)]
    assert len(flashed) == UNITS and all(n == 1 for _, n in flashed), flashed
