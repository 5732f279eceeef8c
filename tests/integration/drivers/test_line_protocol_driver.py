"""What only `LineProtocolDriver` and `SimulatedDevice` have, on real pseudo-terminals (no mocks).

The cases every driver shares (identify, verified flash, corrupted read-back, recoverable faults,
unplugged mid-flash, reboot) are in test_conformance.py. Here: this protocol's own failure modes and
refusals, the serial link (`PySerialLink`) under it, UART pacing, and `socket://` ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from driver_samples import CONFIG, CONFIG_PATH, SHA

from pipeline.domain.identity import DeviceIdentity
from stations.drivers.line_protocol.driver import FlashError, LineProtocolDriver, NoResponse
from stations.drivers.line_protocol.protocol import (
    IdentifyRequest,
    IdentityReply,
    encode_reply,
    encode_request,
)
from stations.drivers.line_protocol.simulated_firmware import SimulatedFirmware
from stations.drivers.line_protocol.simulator import Faults, SimulatedDevice
from stations.drivers.port import DeviceInfo
from stations.errors import LinkError
from stations.line_buffer import LineBuffer
from stations.link import PySerialLink

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(30),
]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    sim = SimulatedDevice("007-888-ABC", "A1:B2:C3:D4:E5:F6", "EdgeGW 200", "1.4.2", tmp_path / "flash")
    with sim:
        yield sim


@pytest.fixture
def driver(device: SimulatedDevice) -> Iterator[LineProtocolDriver]:
    drv = LineProtocolDriver(PySerialLink(device.port), reply_timeout=0.2, retries=2, flash_attempts=3)
    yield drv
    drv.close()


def test_device_too_slow_raises_no_response(driver: LineProtocolDriver, device: SimulatedDevice) -> None:
    device.faults.latency_s = 1.0  # longer than all 3 tries together (3 x 0.2 s)
    started = time.monotonic()
    with pytest.raises(NoResponse, match="did not answer Identify after 3 tries"):
        driver.identify()
    assert time.monotonic() - started < 1.5


def test_persistently_dropped_replies_fail_the_flash_with_reason(
    driver: LineProtocolDriver, device: SimulatedDevice
) -> None:
    device.faults.drop_replies = 1000
    with pytest.raises(FlashError, match=r"in 3 attempts; last: transfer interrupted .* no reply") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable
    # The whole transfer fits the window, so the device may have committed it: then only the
    # complete, device-verified content, never a part (and the station still reports a failure).
    assert device.flashed_files() in ({}, {CONFIG_PATH: CONFIG})


def test_unplugged_device_leaves_no_port_behind(driver: LineProtocolDriver, device: SimulatedDevice) -> None:
    port = device.port
    device.faults.disconnect_after_chunks = 1
    with pytest.raises(FlashError, match="device disconnected while flashing"):
        driver.write_config(CONFIG_PATH, CONFIG)
    with pytest.raises(LinkError, match="no such port"):
        PySerialLink(port)


def test_garbage_device_gives_clear_error_not_hang(
    driver: LineProtocolDriver, device: SimulatedDevice
) -> None:
    device.faults.garbage = True
    started = time.monotonic()
    with pytest.raises(NoResponse, match="did not answer Identify"):
        driver.identify()
    with pytest.raises(FlashError, match="could not write and verify"):
        driver.write_config(CONFIG_PATH, CONFIG)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("path", "size", "reason"),
    [
        ("etc/relative", 10, "E 8 BAD_PATH"),
        ("/etc/../../escape", 10, "E 8 BAD_PATH"),
        (CONFIG_PATH, 70_000, "E 5 NO_SPACE"),
    ],
)
def test_device_refusals_are_permanent_flash_errors(
    driver: LineProtocolDriver, path: str, size: int, reason: str
) -> None:
    with pytest.raises(FlashError, match=reason) as caught:
        driver.write_config(path, b"x" * size)
    assert not caught.value.retryable


def test_missing_port_is_a_one_line_link_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(LinkError) as caught:
        PySerialLink(missing)
    assert str(caught.value) == f"no such port {missing}: is the device plugged in?"


def test_busy_port_is_reported_as_in_use(device: SimulatedDevice, driver: LineProtocolDriver) -> None:
    with pytest.raises(LinkError, match=f"port {device.port} is in use by another program"):
        PySerialLink(device.port)


def test_loop_url_carries_lines_and_bounds_them() -> None:
    link = PySerialLink("loop://")
    try:
        link.write_line(b"01 I*85B7\n")
        assert link.read_line(0.5) == b"01 I*85B7\n"
        assert link.read_line(0.05) is None
        link.write_line(b"x" * 1100 + b"\n01 OK*2524\n")
        assert len(link.read_line(0.5) or b"") == 1025
        assert link.read_line(0.5) == b"01 OK*2524\n"
    finally:
        link.close()


def test_concurrent_callers_are_serialised(driver: LineProtocolDriver) -> None:
    results: list[DeviceInfo] = []
    threads = [threading.Thread(target=lambda: results.append(driver.identify())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1


@pytest.mark.hardware
def test_real_device_identifies() -> None:
    """Needs a device running factory firmware on EDGELINE_TEST_PORT (e.g. /dev/ttyUSB0, COM3)."""
    port = os.environ.get("EDGELINE_TEST_PORT")
    if not port:
        pytest.skip("set EDGELINE_TEST_PORT to the device's port")
    driver = LineProtocolDriver(PySerialLink(port))
    try:
        info = driver.identify()
        DeviceIdentity.parse(info.serial, info.mac)
    finally:
        driver.close()


def test_paced_uart_flash_with_short_base_timeout(tmp_path: Path) -> None:
    """At a real line rate, timeouts grow with the bytes in flight instead of failing long lines."""
    with SimulatedDevice("S-1", "02:00:00:00:00:01", "M", "1", tmp_path, baud=19_200) as sim:
        driver = LineProtocolDriver(PySerialLink(sim.port, 19_200), reply_timeout=0.05, retries=0)
        try:
            started = time.monotonic()
            assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
            elapsed = time.monotonic() - started
        finally:
            driver.close()
    assert elapsed >= len(CONFIG) * 10 / 19_200  # the simulator really paced the bytes


def test_simulator_refuses_to_start_on_windows_but_imports() -> None:
    code = (
        "import sys; sys.platform = 'win32'\n"
        "from pathlib import Path\n"
        "from stations.drivers.line_protocol.simulator import SimulatedDevice, SimulatorUnavailable\n"
        "try:\n"
        "    SimulatedDevice('S', '02:00:00:00:00:01', 'M', '1', Path('.')).start()\n"
        "except SimulatorUnavailable as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs POSIX pseudo-terminals" in out


def test_station_that_stops_reading_does_not_wedge_the_simulator(tmp_path: Path) -> None:
    sim = SimulatedDevice("S-1", "02:00:00:00:00:01", "M", "1", tmp_path).start()
    link = PySerialLink(sim.port)
    for seq in range(200):  # ~12 KB of replies nobody reads: more than the pty buffers
        link.write_line(encode_request(IdentifyRequest(seq % 256)))
    time.sleep(0.3)
    started = time.monotonic()
    sim.stop()
    link.close()
    assert time.monotonic() - started < 1.0
    with sim:  # and a stopped simulator starts again on a fresh pty
        driver = LineProtocolDriver(PySerialLink(sim.port))
        assert driver.identify().serial == "S-1"
        driver.close()


def test_same_driver_over_a_socket_url(tmp_path: Path) -> None:
    """`socket://` (serial-over-TCP bridges) works unchanged through PySerialLink."""
    firmware = SimulatedFirmware(IdentityReply(0, "S-9", "02:00:00:00:00:09", "M", "1"), tmp_path, Faults())
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            buffer = LineBuffer()
            while data := conn.recv(4096):
                buffer.feed(data)
                while (line := buffer.pop_line()) is not None:
                    conn.sendall(encode_reply(firmware.handle_line(line)))

    threading.Thread(target=serve, daemon=True).start()
    driver = LineProtocolDriver(PySerialLink(f"socket://127.0.0.1:{server.getsockname()[1]}"))
    try:
        assert driver.identify().serial == "S-9"
        assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    finally:
        driver.close()
        server.close()
    assert (tmp_path / "etc/aziot/config.toml").read_bytes() == CONFIG
