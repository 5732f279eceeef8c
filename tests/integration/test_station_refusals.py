"""Refusals told to the station (issue #11): quarantine, takeover of an assigned unit, multicast MACs.

Real parts: a private Mosquitto, SQLite built by migrations, the emulator, the pipeline's workers, and
stations serving simulated devices on pseudo-terminals. An EventRecorder listens to every station event.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Mosquitto
from event_recorder import EventRecorder
from line_helpers import Line, run_station, start_line, wait_for

from pipeline.domain.events import ScanRejected
from pipeline.domain.identity import DeviceIdentity
from stations.simulation.fleet import DeviceSpec

pytestmark = pytest.mark.timeout(240)
RESCAN = 1.0  # the station re-sends a scan every second while it waits: a missed stop shows at once


@dataclass
class Setup:
    line: Line
    stack: ExitStack
    workdir: Path
    recorder: EventRecorder


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    run_id = secrets.token_hex(3)
    with ExitStack() as stack:
        stack.callback(broker.stop)
        line = start_line(stack, tmp_path, broker.url, run_id=run_id, client_id=f"refusals-{run_id}")
        recorder = EventRecorder(broker, line.settings.topic_root)
        stack.callback(recorder.close)
        yield Setup(line, stack, tmp_path, recorder)


def station_config() -> dict[str, float]:
    # A config that never arrives would fail only after 120 s: a FAIL within seconds is the refusal.
    return {"poll_interval_seconds": 0.2, "rescan_interval_seconds": RESCAN, "flash_timeout_seconds": 120.0}


def test_a_quarantined_unit_is_told_to_the_station_at_once_and_not_rescanned(setup: Setup) -> None:
    first = DeviceSpec(serial="QA-0001", mac="02:cc:00:00:00:01")
    clone = DeviceSpec(serial="QA-0002", mac="02:cc:00:00:00:01")  # same MAC, other serial
    rid = DeviceIdentity.parse(clone.serial, clone.mac).registration_id()
    run = run_station(
        setup.stack, setup.line, "S1", setup.workdir / "S1", [first, clone], fixtures=1, **station_config()
    )

    wait_for(lambda: len(run.station.results) >= 2, 60, lambda: f"two verdicts: {run.station.results}")
    passed, refused = run.station.results
    assert (passed.outcome, refused.outcome, refused.registration_id) == ("PASS", "FAIL", rid)
    assert refused.reason.startswith("quarantined by the pipeline: identity conflict")
    assert refused.elapsed_seconds < 15, f"told after {refused.elapsed_seconds:.1f} s"
    scans = len([s for s in setup.recorder.scans() if s.registration_id == rid])
    time.sleep(4 * RESCAN)
    assert len([s for s in setup.recorder.scans() if s.registration_id == rid]) == scans <= 2
    [(state, reason)] = setup.line.query(
        "SELECT state, failure_reason FROM units WHERE registration_id = ?", rid
    )
    assert state == "quarantined" and reason.startswith("identity conflict")


def test_another_station_scanning_an_assigned_unit_is_refused_and_gets_no_config(setup: Setup) -> None:
    device = DeviceSpec(serial="TK-0001", mac="02:dd:00:00:00:01")
    rid = DeviceIdentity.parse(device.serial, device.mac).registration_id()
    s1 = run_station(setup.stack, setup.line, "S1", setup.workdir / "S1", [device], **station_config())
    wait_for(lambda: setup.line.unit_state(rid) == "assigned", 90, lambda: "S1's unit assigned")
    assert [r.outcome for r in s1.station.results] == ["PASS"]

    # S2 publishes, on its own topic, a scan naming S1's unit (a cloned device on its fixture).
    clone = DeviceSpec(serial=device.serial, mac=device.mac)
    s2 = run_station(setup.stack, setup.line, "S2", setup.workdir / "S2", [clone], **station_config())

    wait_for(lambda: len(s2.station.results) >= 1, 60, lambda: "S2's verdict")
    [result] = s2.station.results
    assert result.outcome == "FAIL" and "already assigned" in result.reason
    assert result.elapsed_seconds < 15
    assert setup.line.query("SELECT state, station, rework_count FROM units") == [("assigned", "S1", 0)]
    assert setup.line.audit_count("unit.config_issued", rid) == 1
    [(actor,)] = setup.line.query(
        "SELECT actor FROM audit_log WHERE kind = 'unit.rescan_refused' AND registration_id = ?", rid
    )
    assert actor.startswith("station:S2:")


def test_a_multicast_mac_is_refused_at_the_station_before_publishing(setup: Setup) -> None:
    device = DeviceSpec(serial="MC-0001", mac="01:00:5e:00:00:01")
    run = run_station(setup.stack, setup.line, "S1", setup.workdir / "S1", [device], **station_config())

    wait_for(lambda: len(run.station.results) >= 1, 30, lambda: "the station's verdict")
    [result] = run.station.results
    assert result.outcome == "FAIL" and "group (multicast)" in result.reason
    wait_for(
        lambda: any(isinstance(e, ScanRejected) for e in setup.recorder.events),
        30,
        lambda: "the refused scan on the bus",
    )
    assert setup.recorder.scans() == []
    assert setup.line.query("SELECT count(*) FROM units") == [(0,)]
