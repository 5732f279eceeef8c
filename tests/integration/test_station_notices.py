"""The station agent and the pipeline's commands about outcomes, over a real Mosquitto.

`flash.recorded` settles a held `config.flashed` (re-sent with the same id until then); `unit.notice`
shows on the port that handled the unit; commands for another station change nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Mosquitto

from pipeline.bus.cloudevents import encode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.bus.topics import Topics
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import (
    ConfigFlashed,
    FlashConfig,
    FlashRecorded,
    Message,
    UnitNotice,
    UnitScanned,
)
from stations.runtime.agent import StationAgent, status_message
from stations.runtime.config import StationConfig
from stations.runtime.stages import Stage, StageDetail

pytestmark = pytest.mark.timeout(60)
RID = "sn-001-mac-02-00-00-00-00-01"


def wait(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Pipeline:
    """Stands in for the pipeline's bus side: records station events, sends commands to S1."""

    def __init__(self, broker: Mosquitto, topic_root: str) -> None:
        self.topics = Topics(topic_root)
        self.ids: list[str] = []
        self._times: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.bus = PahoBus.from_url(broker.url, f"pipeline-{topic_root}")
        self.bus.connect()
        self.bus.subscribe(self.topics.all_station_events(), self._on_event)

    def _on_event(self, message: InboundMessage) -> None:
        body = json.loads(message.payload)
        with self._lock:
            self.ids.append(body["id"])
            self._times.setdefault(body["id"], []).append(body["time"])
        message.ack()

    def times(self, event_id: str) -> list[str]:
        with self._lock:
            return list(self._times.get(event_id, []))

    def received(self, event_id: str) -> int:
        with self._lock:
            return self.ids.count(event_id)

    def command(self, message: Message, station: str = "S1") -> None:
        _, payload = encode(message, source="edgeline/pipeline")
        self.bus.publish(self.topics.station_command("L1", station, message.NAME), payload)


@pytest.fixture
def pipeline(mosquitto: Mosquitto, topic_root: str) -> Iterator[Pipeline]:
    side = Pipeline(mosquitto, topic_root)
    yield side
    side.bus.close()


@pytest.fixture
def seen() -> list[tuple[str, Stage, StageDetail]]:
    return []


@pytest.fixture
def agent(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str, seen: list[tuple[str, Stage, StageDetail]]
) -> Iterator[StationAgent]:
    key_file = StationKeyPair.generate().save(tmp_path / "S1.key")
    config = StationConfig(
        name="S1", line="L1", key_file=key_file, topic_root=topic_root, flash_ack_resend_seconds=0.5
    )
    bus = PahoBus.from_url(mosquitto.url, f"station-{topic_root}", will=status_message(config, online=False))
    station = StationAgent(
        config, bus, StationKeyPair.load(key_file), on_stage=lambda *args: seen.append(args)
    )
    bus.connect()
    station.start()
    yield station
    station.stop()
    bus.close()


def test_a_held_flash_result_is_resent_with_its_id_until_recorded(
    agent: StationAgent, pipeline: Pipeline
) -> None:
    event_id = agent.publish_event(ConfigFlashed(RID, "S1", "p0", "ab" * 32))
    wait(lambda: pipeline.received(event_id) >= 3, "the same event to be re-sent while unacknowledged")
    assert agent.spool.is_pending(event_id)

    pipeline.command(FlashRecorded(RID, "S2", event_id, "flashed"), station="S1")  # for another station
    time.sleep(1.0)
    assert agent.spool.is_pending(event_id)

    pipeline.command(FlashRecorded(RID, "S1", event_id, "flashed"))
    wait(lambda: not agent.spool.is_pending(event_id), "the acknowledgement to settle the event")
    settled = pipeline.received(event_id)
    time.sleep(1.5)
    assert pipeline.received(event_id) == settled  # no more re-sends
    pipeline.command(FlashRecorded(RID, "S1", event_id, "already recorded"))  # a late duplicate: harmless
    assert agent.spool.held() == []


def test_a_resent_command_for_a_verified_config_is_confirmed_under_the_first_id(
    agent: StationAgent, pipeline: Pipeline
) -> None:
    """A pipeline that re-sends `config.flash` (its station result was held up, e.g. by a broker outage)
    gets the first `config.flashed` again, not a new event it would record as a second flash."""
    sha = "ef" * 32
    agent.expect(RID)
    first = agent.publish_event(ConfigFlashed(RID, "S1", "p0", sha))
    agent.finished(RID, sha)
    pipeline.command(FlashRecorded(RID, "S1", first, "flashed"))
    wait(lambda: not agent.spool.is_pending(first), "the first confirmation to be recorded")

    pipeline.command(FlashConfig(RID, "S1", "p0", "/etc/aziot/config.toml", sha, "sealed"))
    wait(lambda: agent.spool.is_pending(first), "the confirmation to be sent again")
    wait(lambda: pipeline.received(first) >= 2, "the pipeline to receive it again")
    assert set(pipeline.ids) == {first}


def test_notices_show_on_the_port_that_handled_the_unit(
    agent: StationAgent, pipeline: Pipeline, seen: list[tuple[str, Stage, StageDetail]]
) -> None:
    agent.stage("/dev/ttyUSB3", "FLASHED", StageDetail("config written and verified", registration_id=RID))
    agent.stage("/dev/ttyUSB3", "waiting", StageDetail("device unplugged"))  # the row still tells of it
    reason = "flashed 11 min ago, DPS reports not registered: check the device's network/DPS endpoint"

    pipeline.command(UnitNotice(RID, "S2", "overdue", "flashed", "not for S1", False), station="S1")
    pipeline.command(UnitNotice("sn-other", "S1", "assigned", "assigned", "another unit", True))
    pipeline.command(UnitNotice(RID, "S1", "overdue", "flashed", reason, False))
    wait(lambda: any(stage == "OVERDUE" for _, stage, _ in seen), "the OVERDUE stage")
    pipeline.command(UnitNotice(RID, "S1", "assigned", "assigned", "DPS assigned it to hub-1", True))
    wait(lambda: any(stage == "ASSIGNED" for _, stage, _ in seen), "the ASSIGNED stage")

    shown = [(port, stage, detail.text) for port, stage, detail in seen[2:]]
    assert shown == [
        ("/dev/ttyUSB3", "OVERDUE", reason),
        ("/dev/ttyUSB3", "ASSIGNED", "DPS assigned it to hub-1"),
    ]


def test_a_result_nobody_acknowledges_is_given_up_after_the_configured_re_sends(
    agent: StationAgent, pipeline: Pipeline
) -> None:
    agent.sender.max_resends = 2  # e.g. a pipeline that predates flash.recorded
    event_id = agent.publish_event(ConfigFlashed(RID, "S1", "p0", "cd" * 32))
    wait(lambda: not agent.spool.is_pending(event_id), "the station to give up on the event")
    wait(lambda: pipeline.received(event_id) == 3, "sent once, re-sent twice")
    time.sleep(1.0)
    assert pipeline.received(event_id) == 3


def test_a_re_sent_scan_keeps_the_time_of_scanning(agent: StationAgent, pipeline: Pipeline) -> None:
    scanned_at = datetime(2026, 12, 3, 5, 0, 1, tzinfo=UTC)
    scan = UnitScanned(RID, "001", "02:00:00:00:00:01", "L1", "S1", "/dev/ttyUSB0")
    event_id = agent.publish_event(scan, at=scanned_at)
    wait(lambda: pipeline.received(event_id) == 1, "the scan")
    assert agent.publish_event(scan, event_id=event_id, at=scanned_at) == event_id  # the port re-sends it
    wait(lambda: pipeline.received(event_id) == 2, "the re-sent scan")
    assert pipeline.times(event_id) == [scanned_at.isoformat().replace("+00:00", "Z")] * 2
