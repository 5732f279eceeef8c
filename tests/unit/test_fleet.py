"""The simulated fleet after a killed run: stale fixture links, a dying feeder, an honest tally (defect 6)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.azure.ports import DeviceRegistrar, DeviceRegistrationResult
from pipeline.domain.keys import SecretKey
from stations.runtime.results import PortResult
from stations.simulation.fleet import FleetTally, SimulatedFleet, make_devices


class FakeRegistrar(DeviceRegistrar):
    """Never called here: no fake device boots."""

    def register(
        self,
        *,
        global_endpoint: str,
        id_scope: str,
        registration_id: str,
        key: SecretKey,
        timeout: float = 60.0,
    ) -> DeviceRegistrationResult:
        raise AssertionError("no device boots in these tests")


class FakeDevice:
    """A device whose 'port' is a plain file, enough for the fleet's link handling."""

    def __init__(self, serial: str, mac: str, model: str, firmware: str, flash_dir: Path, **_: Any) -> None:
        self.port = str(flash_dir.parent / f"{serial}.tty")

    def start(self) -> None:
        Path(self.port).parent.mkdir(parents=True, exist_ok=True)
        Path(self.port).touch()

    def stop(self) -> None:
        Path(self.port).unlink(missing_ok=True)


class ExplodingDevice(FakeDevice):
    def start(self) -> None:
        raise OSError(24, "Too many open files")


def _fleet(tmp_path: Path, count: int, factory: Callable[..., Any] = FakeDevice) -> SimulatedFleet:
    return SimulatedFleet(
        make_devices(count, "T", b"\x01\x02"),
        tmp_path / "ports",
        tmp_path / "devices",
        FakeRegistrar(),
        fixtures=2,
        device_factory=factory,
    )


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_prepare_removes_the_links_a_killed_run_left(tmp_path: Path) -> None:
    ports = tmp_path / "ports"
    ports.mkdir()
    for index in (1, 2):
        os.symlink("/dev/pts/does-not-exist", ports / f"fixture-{index:05d}")
    (ports / "operator-notes.txt").write_text("not ours")
    assert _fleet(tmp_path, 3).prepare() == 2
    assert sorted(p.name for p in ports.iterdir()) == ["operator-notes.txt"]


def test_a_leftover_link_of_the_same_name_is_replaced_not_fatal(tmp_path: Path) -> None:
    ports = tmp_path / "ports"
    fleet = _fleet(tmp_path, 3)
    fleet.start()  # prepare() ran; a link then appears behind its back, as a racing old process would
    _wait(lambda: len(list(ports.iterdir())) == 2)
    os.symlink("/dev/pts/stale", ports / "fixture-00003")
    fleet.on_result(PortResult("S1", str(ports / "fixture-00001"), "FAIL", "test"))
    _wait(lambda: os.readlink(ports / "fixture-00003") != "/dev/pts/stale")
    for index in (2, 3):
        fleet.on_result(PortResult("S1", str(ports / f"fixture-{index:05d}"), "FAIL", "test"))
    fleet.stop()
    assert fleet.feeding_error is None
    assert (fleet.tally.seen, fleet.tally.failed) == (3, 3)


def test_a_dying_feeder_is_reported_not_silent(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 3, ExplodingDevice)
    fleet.start()
    _wait(lambda: fleet.feeding_error is not None)
    assert fleet.feeding_error is not None and "Too many open files" in fleet.feeding_error
    assert "3 never seen" in fleet.tally.summary()


def test_results_for_ports_the_fleet_never_plugged_do_not_count(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 1)
    fleet.on_result(PortResult("S1", str(tmp_path / "ports" / "fixture-09999"), "PASS", "stale link"))
    assert fleet.tally.seen == 0


def test_the_summary_names_expected_and_seen() -> None:
    tally = FleetTally(expected=150)
    for _ in range(101):
        tally.record(passed=True)
    assert tally.summary() == "150 expected, 101 seen, 101 passed, 0 failed, 49 never seen"
    assert FleetTally(expected=0).summary() == "0 expected, 0 seen, 0 passed, 0 failed"
