"""USB hot-plug through the station supervisor, with real port records and real ttys (no mocks).

The enumeration is the only stand-in: `list_usb` returns `ListPortInfo` records built here, as
pyserial's `comports()` would for USB adapters, whose `.device` is the pseudo-terminal of a running
`SimulatedDevice`; matching (`stations.runtime.usb_ports.matching_ports`), workers, the serial link and the
broker (a private Mosquitto) are the production ones.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import Mosquitto, wait_until
from event_recorder import EventRecorder
from serial.tools.list_ports_common import ListPortInfo

from pipeline.crypto.station_key import StationKeyPair
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.runtime.config import StationConfig
from stations.runtime.process import start_station
from stations.runtime.stages import Stage, StageDetail
from stations.runtime.usb_ports import UsbMatch, matching_ports

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX pseudo-terminals"),
]
FTDI = UsbMatch(0x0403, 0x6001, "FT*")


class UsbBus:
    """The USB serial ports "plugged in" right now; `list` is the station's `list_usb`."""

    def __init__(self) -> None:
        self._ports: list[ListPortInfo] = []
        self._lock = threading.Lock()

    def plug(self, device: str, vid: int, pid: int, serial_number: str) -> None:
        port = ListPortInfo(device, skip_link_detection=True)
        port.vid, port.pid, port.serial_number = vid, pid, serial_number
        with self._lock:
            self._ports.append(port)

    def unplug(self, device: str) -> None:
        with self._lock:
            self._ports = [p for p in self._ports if p.device != device]

    def list(self, matches: Sequence[UsbMatch]) -> list[str]:
        with self._lock:
            return matching_ports(self._ports, matches)


def _worker_alive(port: str) -> bool:
    return any(t.name == f"port-{port}" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[tuple[SimulatedDevice, SimulatedDevice]]:
    ours = SimulatedDevice("FT0001", "02:00:00:00:01:01", "M1", "1.0", tmp_path / "a").start()
    other = SimulatedDevice("CH0002", "02:00:00:00:01:02", "M1", "1.0", tmp_path / "b").start()
    yield ours, other
    ours.stop()
    other.stop()


def test_a_matching_usb_port_is_served_until_unplugged_and_others_never_opened(
    mosquitto: Mosquitto,
    topic_root: str,
    tmp_path: Path,
    devices: tuple[SimulatedDevice, SimulatedDevice],
) -> None:
    ours, other = devices
    recorder = EventRecorder(mosquitto, topic_root)
    touched: set[str] = set()
    usb = UsbBus()

    def on_stage(port: str, stage: Stage, detail: StageDetail) -> None:
        touched.add(port)  # a worker reports a stage as soon as it serves a port

    key_file = StationKeyPair.generate().save(tmp_path / "S1.key")
    # No pipeline answers the scan: the worker gives up on the config after 2 s, then sees the unplug.
    config = StationConfig(
        "S1", "L1", key_file, topic_root=topic_root, poll_interval_seconds=0.2, flash_timeout_seconds=2
    )
    station = start_station(config, mosquitto.url, usb=[FTDI], list_usb=usb.list, on_stage=on_stage)
    try:
        usb.plug(other.port, 0x1A86, 0x7523, "FT9999")  # a CH340: right serial glob, wrong VID:PID
        usb.plug(ours.port, 0x0403, 0x6001, "FT0001")
        wait_until(lambda: bool(recorder.scans()), 15, "the scan of the device on the matching USB port")
        assert [(s.serial, s.port) for s in recorder.scans()] == [("FT0001", ours.port)]
        assert _worker_alive(ours.port)

        usb.unplug(ours.port)
        wait_until(lambda: not _worker_alive(ours.port), 10, "the worker of the unplugged port to end")
        time.sleep(1.5)  # more than one enumeration interval: the port is not served again
        assert not _worker_alive(ours.port)
        assert other.port not in touched and not _worker_alive(other.port)
        assert [s.serial for s in recorder.scans()] == ["FT0001"]
    finally:
        station.stop()
        recorder.close()
