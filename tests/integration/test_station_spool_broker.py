"""The offline spool against a real Mosquitto that is stopped and started again (no mocks).

While the broker is down, station events are spooled on disk and `publish_event` returns at once;
when it is back, a subscriber with a persistent session receives every event exactly once (by
CloudEvent id) and in order — also when the station process was restarted in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Mosquitto, RestartableMosquitto, wait_until
from event_recorder import EventRecorder

from pipeline.bus.paho import PahoBus
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import ConfigFlashed, UnitScanned
from stations.runtime.agent import StationAgent, status_message
from stations.runtime.config import StationConfig
from stations.runtime.spool import Spool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def config(tmp_path: Path, topic_root: str) -> StationConfig:
    key_file = StationKeyPair.generate().save(tmp_path / "S1.key")
    return StationConfig(name="S1", line="L1", key_file=key_file, topic_root=topic_root)


@pytest.fixture
def recorder(restartable_mosquitto: RestartableMosquitto, topic_root: str) -> Iterator[EventRecorder]:
    rec = EventRecorder(restartable_mosquitto, topic_root)
    yield rec
    rec.close()


def _agent(config: StationConfig, broker: Mosquitto, *, connect: bool = True) -> StationAgent:
    bus = PahoBus.from_url(broker.url, "station-S1", will=status_message(config, online=False))
    agent = StationAgent(config, bus, StationKeyPair.load(config.key_file))
    if connect:
        bus.connect()
        agent.start()
    return agent


def _produce(agent: StationAgent, count: int) -> list[str]:
    ids = []
    for n in range(count):
        rid = f"sn-{n:03d}-mac-02-00-00-00-00-{n:02x}"
        scan = UnitScanned(rid, f"{n:03d}", f"02:00:00:00:00:{n:02x}", "L1", "S1", "p0")
        ids.append(agent.publish_event(scan))
        ids.append(agent.publish_event(ConfigFlashed(rid, "S1", "p0", "ab" * 32)))
    return ids


def _close(agent: StationAgent) -> None:
    agent.stop()
    agent.bus.close()


def test_events_made_while_the_broker_is_down_arrive_once_when_it_is_back(
    restartable_mosquitto: RestartableMosquitto, recorder: EventRecorder, config: StationConfig
) -> None:
    mosquitto = restartable_mosquitto
    agent = _agent(config, mosquitto)
    before = _produce(agent, 2)
    wait_until(lambda: recorder.received() == before, 10, "the events sent while the broker is up")
    mosquitto.stop()
    wait_until(lambda: not agent.bus.connected, 10, "the station to notice the outage")
    started = time.monotonic()
    during = _produce(agent, 5)
    assert time.monotonic() - started < 2.0, "a port worker must never wait for the broker"
    assert [e.event_id for e in agent.spool.pending()] == during
    mosquitto.start()
    wait_until(lambda: len(recorder.received()) >= len(before + during), 30, "the spooled events")
    time.sleep(1.0)  # anything sent twice would arrive by now
    assert recorder.received() == before + during  # every one, in order
    assert recorder.sent_twice() == []
    assert len(agent.spool) == 0
    _close(agent)


def test_the_spool_survives_a_station_restart(
    restartable_mosquitto: RestartableMosquitto, recorder: EventRecorder, config: StationConfig
) -> None:
    mosquitto = restartable_mosquitto
    agent = _agent(config, mosquitto)
    mosquitto.stop()
    wait_until(lambda: not agent.bus.connected, 10, "the station to notice the outage")
    spooled = _produce(agent, 3)
    _close(agent)  # the station process goes away with 6 events unsent

    restarted = _agent(config, mosquitto, connect=False)  # same key file, so the same spool folder
    assert [e.event_id for e in restarted.spool.pending()] == spooled
    mosquitto.start()
    restarted.bus.connect()
    restarted.start()
    wait_until(lambda: len(recorder.received()) >= len(spooled), 30, "the replayed events")
    time.sleep(1.0)
    assert recorder.received() == spooled
    assert len(Spool(config.key_file.with_name("S1.key.spool"))) == 0
    _close(restarted)
