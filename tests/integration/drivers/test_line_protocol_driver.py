"""The device driver against simulated devices on real pseudo-terminals (no mocks).

Every fault either ends in success after retries or in FlashError/NoResponse/LinkError with a reason;
a corrupted write or a wrong read-back hash never ends in success.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.domain.identity import DeviceIdentity
from stations.drivers.line_protocol.driver import FlashError, LineProtocolDriver, NoResponse
from stations.drivers.line_protocol.framing import LineBuffer
from stations.drivers.line_protocol.protocol import (
    IdentifyRequest,
    IdentityReply,
    encode_reply,
    encode_request,
)
from stations.drivers.line_protocol.simulated_firmware import SimulatedFirmware
from stations.drivers.line_protocol.simulator import Faults, SimulatedDevice
from stations.drivers.port import DeviceInfo
from stations.errors import LinkError, PortVanished
from stations.link import PySerialLink

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(30),
]

CONFIG_PATH = "/etc/aziot/config.toml"
CONFIG = (
    b'[provisioning]\nsource = "dps"\nglobal_endpoint = "https://global.azure-devices-provisioning.net/"\n'
    b'id_scope = "0ne00A1B2C3"\n\n[provisioning.attestation]\nmethod = "symmetric_key"\n'
    b'registration_id = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"\n'
    b'symmetric_key = { value = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" }\n'
) * 3
SHA = hashlib.sha256(CONFIG).hexdigest()


@pytest.fixture
def booted() -> list[Path]:
    return []


@pytest.fixture
def device(tmp_path: Path, booted: list[Path]) -> Iterator[SimulatedDevice]:
    sim = SimulatedDevice(
        "007-888-ABC", "A1:B2:C3:D4:E5:F6", "EdgeGW 200", "1.4.2", tmp_path / "flash", on_boot=booted.append
    )
    with sim:
        yield sim


@pytest.fixture
def driver(device: SimulatedDevice) -> Iterator[LineProtocolDriver]:
    drv = LineProtocolDriver(PySerialLink(device.port), reply_timeout=0.2, retries=2, flash_attempts=3)
    yield drv
    drv.close()


def test_identify_over_a_real_pty(driver: LineProtocolDriver) -> None:
    info = driver.identify()
    assert info == DeviceInfo("007-888-ABC", "A1:B2:C3:D4:E5:F6", "EdgeGW 200", "1.4.2")
    assert (
        DeviceIdentity.parse(info.serial, info.mac).registration_id()
        == "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
    )


def test_flash_is_verified_by_read_back_and_stored_atomically_0600(
    driver: LineProtocolDriver, device: SimulatedDevice, booted: list[Path]
) -> None:
    assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    assert device.flashed_files() == {CONFIG_PATH: CONFIG}
    stored = device.flash_dir / "etc/aziot/config.toml"
    assert stored.stat().st_mode & 0o777 == 0o600
    driver.reboot()
    _wait_for(lambda: booted == [stored])


def test_rework_flashes_again_and_large_files_use_many_windows(
    driver: LineProtocolDriver, device: SimulatedDevice
) -> None:
    driver.write_config(CONFIG_PATH, b"old")
    big = os.urandom(10_000)
    assert driver.write_config(CONFIG_PATH, big) == hashlib.sha256(big).hexdigest()
    assert driver.write_config("/etc/empty", b"") == hashlib.sha256(b"").hexdigest()
    assert device.flashed_files() == {CONFIG_PATH: big, "/etc/empty": b""}


RECOVERABLE = {
    "noise": Faults(noise=True),
    "dropped reply": Faults(drop_replies=1),
    "dropped replies": Faults(drop_replies=2),
    "duplicated replies": Faults(duplicate_replies=True),
    "corrupted reply": Faults(corrupt_replies=1),
    "slow device": Faults(latency_s=0.03),
    "noise and duplicates": Faults(noise=True, duplicate_replies=True),
}


@pytest.mark.parametrize("faults", RECOVERABLE.values(), ids=RECOVERABLE.keys())
def test_recoverable_faults_succeed_after_retries(
    driver: LineProtocolDriver, device: SimulatedDevice, faults: Faults
) -> None:
    device.faults.__dict__.update(faults.__dict__)
    assert driver.identify().serial == "007-888-ABC"
    device.faults.__dict__.update(faults.__dict__)  # re-arm counted faults for the flash
    assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    assert device.flashed_files() == {CONFIG_PATH: CONFIG}


NEVER_VERIFIED = {
    "corrupted write": Faults(corrupt_write=True),
    "wrong read-back hash": Faults(wrong_hash=True),
    "corrupted write with noise": Faults(corrupt_write=True, noise=True, duplicate_replies=True),
}


@pytest.mark.parametrize("faults", NEVER_VERIFIED.values(), ids=NEVER_VERIFIED.keys())
def test_unverifiable_writes_never_report_success(
    driver: LineProtocolDriver, device: SimulatedDevice, faults: Faults
) -> None:
    device.faults.__dict__.update(faults.__dict__)
    with pytest.raises(FlashError, match=r"read-back of /etc/aziot/config\.toml gives SHA-256") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable


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


def test_unplugged_mid_flash_raises_flash_error_and_port_is_gone(
    driver: LineProtocolDriver, device: SimulatedDevice
) -> None:
    port = device.port
    device.faults.disconnect_after_chunks = 1  # the first DATA line: configs fit 1-2 lines
    with pytest.raises(FlashError, match="device disconnected while flashing") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable
    assert isinstance(caught.value, PortVanished)  # one "unplugged" handler serves every operation
    assert device.flashed_files() == {}
    with pytest.raises(PortVanished):
        driver.identify()
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


def _wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


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
