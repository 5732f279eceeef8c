"""Sparkplug B publisher (`edgeline sparkplug`, a real process) on a real Mosquitto, decoded independently.

The publisher encodes with pysparkplug; this test decodes with the Eclipse Tahu generated protobuf module
(`sparkplug_b_pb2`, shipped by the `sparkplug-b-packets` package) and checks births, sequence numbers,
data by exception, and NDEATH both from the will (process killed) and from a clean stop (SIGTERM).
"""

from __future__ import annotations

import base64
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sparkplub_b_packets.core import sparkplug_b_pb2 as tahu

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.db.session import Database
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState

if TYPE_CHECKING:
    from tests.conftest import Mosquitto

LINE = "L7"
INT64, DOUBLE, BOOLEAN, STRING = 4, 10, 11, 12  # Sparkplug B DataType codes
WAIT = 30.0


class Host:
    """A minimal Sparkplug host: every message on `spBv1.0/{group}/#`, decoded with Tahu's protobuf."""

    def __init__(self, url: str, group: str, *, clean_session: bool = True) -> None:
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.bus = PahoBus.from_url(url, f"host-{uuid.uuid4().hex[:8]}", clean_session=clean_session)
        self.bus.connect()
        self.bus.subscribe(f"spBv1.0/{group}/#", self._on_message)

    def _on_message(self, message: InboundMessage) -> None:
        message.ack()  # before the test sees it: a broker stopped right after must not hold it un-acked
        self.messages.put((message.topic, tahu.Payload.FromString(message.payload)))

    def next(self, kind: str, device: str | None = None) -> Any:
        """The next message of `kind` (skipping others), for the node or a device."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                topic, payload = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            parts = topic.split("/")
            if parts[2] == kind and (device is None or (len(parts) == 5 and parts[4] == device)):
                return payload
        raise AssertionError(f"no {kind} {device or ''} within {WAIT} s")


def metrics(payload: Any) -> dict[str, tuple[int, Any]]:
    """name -> (datatype, value) of a decoded payload."""
    return {m.name: (m.datatype, getattr(m, m.WhichOneof("value"))) for m in payload.metrics}


def add_units(db: Database, *units: tuple[str, UnitState, str | None]) -> None:
    """Add (station, state, failure reason) units in ONE transaction: one publisher round sees them all."""
    with db.uow() as uow:
        for station, state, reason in units:
            n = uuid.uuid4().int % 10**9
            unit = Unit(
                f"sn-{n}-mac-aa",
                str(n),
                "02:00:00:00:00:01",
                LINE,
                station,
                EnrollmentMode.GROUP,
                state=state,
            )
            unit.updated_at = datetime.now(UTC)
            if reason:
                unit.failure = Failure("enroll", reason, retryable=False)
            uow.units.add(unit)
        uow.commit()


def add_unit(db: Database, station: str, state: UnitState, reason: str | None = None) -> None:
    add_units(db, (station, state, reason))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


def start_publisher(
    db_url: str, mosquitto: Mosquitto, group: str, state_dir: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EDGELINE_DATABASE_URL": db_url,
        "EDGELINE_MQTT_URL": mosquitto.url,
        "EDGELINE_LINE": LINE,
        "EDGELINE_SPARKPLUG_GROUP_ID": group,
        "EDGELINE_SPARKPLUG_INTERVAL_SECONDS": "0.2",
        "EDGELINE_STATE_DIR": str(state_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "sparkplug"], env=env, stderr=subprocess.PIPE
    )


def test_births_data_and_death_seen_by_an_independent_host(
    db: Database, db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    add_unit(db, "S1", UnitState.ASSIGNED)
    add_unit(db, "S1", UnitState.ASSIGNED)
    add_unit(db, "S1", UnitState.FAILED, reason="DPS refused the enrollment")
    add_unit(db, "S2", UnitState.ONLINE)
    host = Host(mosquitto.url, group)
    process = start_publisher(db_url, mosquitto, group, tmp_path)
    try:
        nbirth = host.next("NBIRTH")
        node = metrics(nbirth)
        assert nbirth.seq == 0
        assert node["bdSeq"] == (INT64, 0)
        assert node["Node Control/Rebirth"] == (BOOLEAN, False)
        assert node["units/assigned"] == (INT64, 2) and node["units/online"] == (INT64, 1)
        assert node["yield"] == (DOUBLE, 0.75)
        s1, s2 = host.next("DBIRTH", "S1"), host.next("DBIRTH", "S2")
        assert [s1.seq, s2.seq] == [1, 2]
        assert metrics(s1)["units/failed"] == (INT64, 1)
        assert metrics(s1)["last failure"][0] == STRING
        assert metrics(s1)["last failure"][1].endswith("enroll: DPS refused the enrollment")
        assert metrics(s2)["units/total"] == (INT64, 1)

        add_units(db, ("S2", UnitState.NOT_ONLINE, "never connected"), ("S3", UnitState.SCANNED, None))
        ndata, ddata, dbirth = host.next("NDATA"), host.next("DDATA", "S2"), host.next("DBIRTH", "S3")
        assert [ndata.seq, ddata.seq, dbirth.seq] == [3, 4, 5]
        assert metrics(ndata)["units/not_online"] == (INT64, 1)
        assert "units/assigned" not in metrics(ndata)  # by exception: only what changed
        assert metrics(ddata)["units/not_online"] == (INT64, 1)
        assert metrics(ddata)["yield"] == (DOUBLE, 0.5)
        assert metrics(dbirth)["units/scanned"] == (INT64, 1)

        process.kill()  # no NDEATH of its own: the broker publishes the will
        ndeath = host.next("NDEATH")
        assert metrics(ndeath) == {"bdSeq": (INT64, 0)}
    finally:
        process.kill()
        process.wait(10)
        host.bus.close()


def test_restart_takes_the_next_bdseq_and_a_clean_stop_publishes_ndeath(
    db: Database, db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    add_unit(db, "S1", UnitState.FLASHED)
    host = Host(mosquitto.url, group)
    for expected in (0, 1):
        process = start_publisher(db_url, mosquitto, group, tmp_path)
        try:
            assert metrics(host.next("NBIRTH"))["bdSeq"] == (INT64, expected)
            process.send_signal(signal.SIGTERM)
            assert metrics(host.next("NDEATH"))["bdSeq"] == (INT64, expected)
            assert process.wait(15) == 0
        finally:
            process.kill()
            process.wait(10)
    host.bus.close()


def test_edgeline_up_runs_the_publisher_when_enabled(
    db: Database, db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    add_unit(db, "S4", UnitState.ASSIGNED)
    host = Host(mosquitto.url, group)
    key = base64.b64encode(os.urandom(32)).decode()
    env = {
        **os.environ,
        "EDGELINE_DATABASE_URL": db_url,
        "EDGELINE_MQTT_URL": mosquitto.url,
        "EDGELINE_TOPIC_ROOT": f"up-{uuid.uuid4().hex[:8]}",
        "EDGELINE_LINE": LINE,
        "EDGELINE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "EDGELINE_ENROLLMENT_MODE": "individual",  # no DPS call at start-up: none runs here
        "EDGELINE_DPS_CONNECTION_STRING": "HostName=127.0.0.1:9;SharedAccessKeyName=provisioningserviceowner;"
        f"SharedAccessKey={key}",
        "EDGELINE_DPS_ID_SCOPE": "0ne00000001",
        "EDGELINE_DPS_GLOBAL_ENDPOINT": "http://127.0.0.1:9",  # the same (unused) service as above
        "EDGELINE_SPARKPLUG_ENABLED": "true",
        "EDGELINE_SPARKPLUG_GROUP_ID": group,
        "EDGELINE_SPARKPLUG_EDGE_NODE_ID": "line-7",
        "EDGELINE_STATE_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "up"], env=env, stderr=subprocess.PIPE
    )
    try:
        nbirth = host.next("NBIRTH")
        assert metrics(nbirth)["units/assigned"] == (INT64, 1)
        assert metrics(host.next("DBIRTH", "S4"))["units/total"] == (INT64, 1)
        process.send_signal(signal.SIGTERM)
        assert metrics(host.next("NDEATH"))["bdSeq"] == metrics(nbirth)["bdSeq"]
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait(10)
        host.bus.close()


def test_host_rebirth_command_republishes_the_births(
    db: Database, db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    add_unit(db, "S1", UnitState.ASSIGNED)
    host = Host(mosquitto.url, group)
    process = start_publisher(db_url, mosquitto, group, tmp_path)
    try:
        first = host.next("NBIRTH")
        host.next("DBIRTH", "S1")
        ncmd = f"spBv1.0/{group}/NCMD/{LINE}"
        host.bus.publish(ncmd, b"\xff\x00 not protobuf")  # a broken command is ignored, not fatal
        command = tahu.Payload(timestamp=int(time.time() * 1000))
        metric = command.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN)
        metric.boolean_value = True
        host.bus.publish(ncmd, command.SerializeToString())
        again = host.next("NBIRTH")
        assert again.seq == 0 and metrics(again)["bdSeq"] == metrics(first)["bdSeq"]
        assert host.next("DBIRTH", "S1").seq == 1
        assert process.poll() is None
    finally:
        process.kill()
        process.wait(10)
        host.bus.close()


def test_every_reconnect_is_a_new_session_with_the_next_bdseq(
    db: Database, db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    add_unit(db, "S1", UnitState.ASSIGNED)
    host = Host(mosquitto.url, group, clean_session=False)  # its subscription survives the broker restart
    process = start_publisher(db_url, mosquitto, group, tmp_path)
    try:
        assert metrics(host.next("NBIRTH"))["bdSeq"] == (INT64, 0)
        mosquitto.stop()  # the broker goes away and comes back (persistent sessions kept)
        mosquitto.start()
        rebirth = host.next("NBIRTH")  # the publisher reconnected: a new session, a new will
        if metrics(rebirth)["bdSeq"] == (INT64, 0):
            # QoS 1: if the broker stopped before the host's PUBACK reached it, the restarted broker
            # redelivers the first session's birth to the host's persistent session first.
            rebirth = host.next("NBIRTH")
        assert rebirth.seq == 0 and metrics(rebirth)["bdSeq"] == (INT64, 1)
        process.kill()
        death = host.next("NDEATH")
        if metrics(death)["bdSeq"] == (INT64, 0):  # a broker may still deliver the first session's will
            death = host.next("NDEATH")
        assert metrics(death)["bdSeq"] == (INT64, 1)
    finally:
        process.kill()
        process.wait(10)
        host.bus.close()
