"""A `config.flashed` the broker acknowledged and then lost is re-sent until the pipeline records it.

Issue #11 defect 4: Mosquitto PUBACKed a station's `config.flashed`, then died before saving it. Here a
real Mosquitto runs with persistence off; the pipeline is stopped while the station flashes (so the event
waits in the broker for the pipeline's session), the broker is restarted (the event is gone), and a new
pipeline starts. The station, on a real pseudo-terminal with a simulated device, must re-send the very
same event (same CloudEvents id) until the pipeline's `flash.recorded` acknowledgement arrives.
"""

from __future__ import annotations

import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Mosquitto
from line_helpers import Line, run_station, start_line, wait_for

from pipeline.bootstrap import build_pipeline
from stations.runtime.stages import Stage, StageDetail
from stations.simulation.fleet import make_devices

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(120),
]


def forgetful_mosquitto(workdir: Path) -> Mosquitto:
    """A Mosquitto that keeps nothing across a restart: what it acknowledged is lost with it."""
    workdir.mkdir(parents=True)
    broker = Mosquitto(workdir)
    broker.config.write_text(broker.config.read_text().replace("persistence true", "persistence false"))
    return broker


class Stages:
    """The station's operator view as a list; holds the port at `flashing` until released."""

    def __init__(self) -> None:
        self.seen: list[tuple[Stage, str]] = []
        self.flashing = threading.Event()
        self.release = threading.Event()

    def __call__(self, port: str, stage: Stage, detail: StageDetail) -> None:
        self.seen.append((stage, detail.text))
        if stage == "flashing" and not self.flashing.is_set():
            self.flashing.set()
            self.release.wait(60)


def test_a_flash_result_lost_by_the_broker_is_resent_with_its_id_until_recorded(tmp_path: Path) -> None:
    broker = forgetful_mosquitto(tmp_path / "broker")
    broker.start()
    stages = Stages()
    with ExitStack() as stack:
        stack.callback(broker.stop)
        line = start_line(
            stack,
            tmp_path,
            broker.url,
            run_id="flashack",
            client_id="flashack-worker",
            reconcile_stuck_seconds=3600.0,  # no re-sent flash command: only the station's re-send helps
        )
        [device] = make_devices(1, "FLASHACK", b"\x0a\x0c")
        run = run_station(
            stack,
            line,
            "S1",
            tmp_path / "station",
            [device],
            on_stage=stages,
            poll_interval_seconds=0.2,
            flash_ack_resend_seconds=1.0,
        )
        spool = run.station.agent.spool
        assert stages.flashing.wait(60), "the station never started flashing"
        line.pipeline.stop()  # the pipeline is away while the result is published
        stages.release.set()
        wait_for(lambda: bool(spool.held()), 30, lambda: "the broker's PUBACK of config.flashed")
        [held] = spool.held()
        assert line.query("SELECT count(*) FROM processed_messages WHERE event_id = ?", held.event_id) == [
            (0,)
        ]

        broker.stop()  # persistence off: the event queued for the pipeline's session is gone
        wait_for(lambda: not run.station.bus.connected, 30, lambda: "the station to notice the outage")
        broker.start()
        # Notices are not queued for a station that is away (its session died with the broker): let
        # it reconnect first, as it would long before a device gets assigned on a real line.
        wait_for(lambda: run.station.bus.connected, 30, lambda: "the station to reconnect")
        again = build_pipeline(line.settings, client_id="flashack-worker", hub=None)
        stack.callback(again.stop)
        again.start()

        def recorded() -> bool:
            rows = line.query(
                "SELECT count(*) FROM processed_messages WHERE event_id = ? AND handler = 'recorder'",
                held.event_id,
            )
            return rows == [(1,)]

        wait_for(recorded, 60, lambda: f"the re-sent event {held.event_id}; spool held {spool.held()}")
        wait_for(lambda: spool.held() == [], 30, lambda: "the pipeline's flash.recorded acknowledgement")
        rid = held_registration_id(line.query("SELECT registration_id FROM units"))
        wait_for(
            lambda: line.unit_state(rid) == "assigned", 60, lambda: f"assignment; {line.unit_state(rid)}"
        )
        wait_for(
            lambda: ("ASSIGNED", f"DPS assigned it to {assigned_hub(line, rid)}") in stages.seen,
            30,
            lambda: f"the station to show ASSIGNED; stages {stages.seen}",
        )
        assert ("FLASHED", "config written and verified; waiting for DPS to assign the device") in stages.seen
        assert "PASS" not in [stage for stage, _ in stages.seen]


def held_registration_id(rows: list[tuple[object, ...]]) -> str:
    [(rid,)] = rows
    return str(rid)


def assigned_hub(line: Line, rid: str) -> str:
    rows = line.query("SELECT assigned_hub FROM units WHERE registration_id = ?", rid)
    return str(rows[0][0])
