"""A station started while the broker is down serves its ports and catches up when the broker comes.

Real parts only: a private Mosquitto that is stopped before the station starts and started later, a
simulated device on a real pseudo-terminal, and a persistent-session subscriber standing in for the
pipeline. The scan made while the broker was down must arrive, and the station's retained status must
become online, once the broker is up (paho's reconnect backoff: the first retries come after 1, 2, 4 s).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Mosquitto, RestartableMosquitto, wait_until
from event_recorder import EventRecorder

from pipeline.bus.cloudevents import decode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.bus.topics import Topics
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import StationStatus
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.runtime.config import StationConfig
from stations.runtime.process import start_station

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX pseudo-terminals"),
]


def retained_status(broker: Mosquitto, config: StationConfig) -> StationStatus | None:
    """The station's retained presence message as a new subscriber sees it (None if there is none)."""
    got: list[StationStatus] = []
    arrived = threading.Event()

    def on_message(message: InboundMessage) -> None:
        status = decode(message.payload).message
        assert isinstance(status, StationStatus)
        got.append(status)
        message.ack()
        arrived.set()

    bus = PahoBus.from_url(broker.url, f"status-reader-{time.monotonic_ns()}", clean_session=True)
    try:
        bus.connect()
        bus.subscribe(Topics(config.topic_root).station_status(config.line, config.name), on_message)
        arrived.wait(1.0)
    finally:
        bus.close()
    return got[-1] if got else None


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    sim = SimulatedDevice("SN-0042", "02:00:00:00:00:42", "M1", "1.0", tmp_path / "flash").start()
    yield sim
    sim.stop()


def test_a_station_started_while_the_broker_is_down_scans_and_catches_up(
    restartable_mosquitto: RestartableMosquitto, topic_root: str, tmp_path: Path, device: SimulatedDevice
) -> None:
    broker = restartable_mosquitto
    recorder = EventRecorder(broker, topic_root)  # its persistent session queues what comes meanwhile
    broker.stop()
    key_file = StationKeyPair.generate().save(tmp_path / "S1.key")
    config = StationConfig(
        "S1", "L1", key_file, topic_root=topic_root, poll_interval_seconds=0.2, flash_timeout_seconds=30
    )
    station = start_station(config, broker.url, ports=[device.port], connect_timeout=0.5)
    try:
        assert station.broker_unreachable is not None and "refused" in station.broker_unreachable
        wait_until(lambda: len(station.agent.spool) >= 1, 10, "the scan to be spooled while offline")
        assert not station.bus.connected

        broker.start()
        wait_until(lambda: bool(recorder.scans()), 30, "the spooled scan to reach the subscriber")
        assert [(s.serial, s.station, s.port) for s in recorder.scans()] == [("SN-0042", "S1", device.port)]
        wait_until(lambda: station.bus.connected, 5, "the station's session")
        status = retained_status(broker, config)
        assert status is not None and status.online, f"retained status after reconnect: {status}"
    finally:
        station.stop()
        recorder.close()
