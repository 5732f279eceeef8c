"""The broker, the database and DPS fail under a running line; after recovery nothing is lost or doubled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import FaultBroker, FaultLine, assert_healthy

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.timeout(420)]
UNITS = 30


@pytest.mark.parametrize(
    ("how", "persistence"),
    [("SIGTERM", True), ("SIGKILL", True), ("SIGTERM", False), ("SIGKILL", False)],
    ids=["sigterm-persistent", "sigkill-persistent", "sigterm-volatile", "sigkill-volatile"],
)
def test_broker_dies_and_comes_back(tmp_path: Path, how: str, persistence: bool) -> None:
    broker = FaultBroker(tmp_path / "broker", persistence=persistence)
    with FaultLine(tmp_path, units=UNITS, broker=broker) as line:
        line.start()
        line.wait_scanned(8)
        broker.stop() if how == "SIGTERM" else broker.kill()
        time.sleep(5)
        broker.start()
        label = f"broker {how}, {'persistent' if persistence else 'no persistence'}"
        outcome = line.settle(label, time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


def test_broker_that_drops_queued_messages(tmp_path: Path) -> None:
    """Mosquitto's queue limit drops QoS 1 messages for a slow subscriber; the reconciler covers it."""
    broker = FaultBroker(tmp_path / "broker", max_queued=5)
    with FaultLine(tmp_path, units=UNITS, broker=broker) as line:
        line.start()
        outcome = line.settle("broker max_queued_messages 5", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


def test_database_unreachable_for_30_seconds(tmp_path: Path) -> None:
    with FaultLine(tmp_path, units=UNITS, db_proxy=True) as line:
        line.start()
        line.wait_scanned(8)
        assert line.proxy is not None
        line.proxy.cut()
        time.sleep(30)
        line.proxy.restore()
        outcome = line.settle("PostgreSQL unreachable 30 s", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


STORMS = {
    "429": {"throttle": True},
    "5xx": {"error_rate_5xx": 0.5},
    "dropped": {"drop_connections_rate": 0.5},
}


@pytest.mark.parametrize("mode", ["individual", "group"])
@pytest.mark.parametrize("storm", STORMS)
def test_dps_storm(tmp_path: Path, storm: str, mode: str) -> None:
    with FaultLine(tmp_path, units=UNITS, mode=mode) as line:
        line.start()
        line.wait_scanned(5)
        line.dps_faults(**STORMS[storm])
        time.sleep(15)
        line.dps_faults()
        outcome = line.settle(f"DPS {storm} storm 15 s, {mode}", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)
