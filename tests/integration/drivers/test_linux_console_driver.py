"""LinuxConsoleDriver against SimulatedConsole on real pseudo-terminals (no mocks).

Every fault ends in success after retries or in FlashError/NoResponse with a reason; a corrupted
write or a wrong read-back hash never ends in success.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.domain.identity import DeviceIdentity
from stations.drivers.linux_console.driver import ConsoleOptions, LinuxConsoleDriver, LoginFailed
from stations.drivers.linux_console.session import ConsoleCredentials
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, ConsoleFaults, SimulatedConsole
from stations.drivers.port import DeviceInfo
from stations.drivers.registry import available_drivers, load_driver_factory
from stations.errors import FlashError, NoResponse, PortVanished
from stations.link import PySerialLink

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated consoles need POSIX pseudo-terminals"),
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
FAST = ConsoleOptions(command_timeout=0.5, prompt_timeout=1.0, chunk_chars=256)


@pytest.fixture
def booted() -> list[Path]:
    return []


@pytest.fixture
def console(tmp_path: Path, booted: list[Path]) -> Iterator[SimulatedConsole]:
    sim = SimulatedConsole(
        "007-888-ABC",
        "A1:B2:C3:D4:E5:F6",
        "EdgeGW 200",
        "EdgeOS 4.2",
        tmp_path / "flash",
        on_boot=booted.append,
    )
    with sim:
        yield sim


def _driver(console: SimulatedConsole, options: ConsoleOptions = FAST) -> LinuxConsoleDriver:
    return LinuxConsoleDriver(PySerialLink(console.port), DEFAULT_CREDENTIALS, options)


@pytest.fixture
def driver(console: SimulatedConsole) -> Iterator[LinuxConsoleDriver]:
    drv = _driver(console)
    yield drv
    drv.close()


def test_identify_over_a_real_pty(driver: LinuxConsoleDriver) -> None:
    info = driver.identify()
    assert info == DeviceInfo("007-888-ABC", "a1:b2:c3:d4:e5:f6", "EdgeGW 200", "EdgeOS 4.2")
    identity = DeviceIdentity.parse(info.serial, info.mac)
    assert identity.registration_id() == "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


@pytest.mark.parametrize("source", ["dmi", "/proc/device-tree/serial-number"])
def test_serial_sources(console: SimulatedConsole, source: str) -> None:
    drv = _driver(console, ConsoleOptions(command_timeout=0.5, serial_source=source))
    try:
        assert drv.identify().serial == "007-888-ABC"
    finally:
        drv.close()


def test_flash_is_verified_stored_0600_applied_and_boots(
    console: SimulatedConsole, booted: list[Path]
) -> None:
    drv = _driver(console, ConsoleOptions(command_timeout=0.5, sudo=True, apply=True, chunk_chars=200))
    try:
        assert drv.write_config(CONFIG_PATH, CONFIG) == SHA
        assert console.flashed_files() == {CONFIG_PATH: CONFIG}
        stored = console.flash_dir / "etc/aziot/config.toml"
        assert stored.stat().st_mode & 0o777 == 0o600
        assert not list((console.flash_dir / "tmp").iterdir())  # the staged key is gone
        assert drv.write_config("/etc/empty", b"") == hashlib.sha256(b"").hexdigest()
        drv.reboot()
        _wait_for(lambda: booted == [console.flash_dir / "etc/empty"])
        assert drv.identify().serial == "007-888-ABC"  # logs in again after the reboot
    finally:
        drv.close()


RECOVERABLE = {
    "noise": ConsoleFaults(noise=True),
    "dropped line": ConsoleFaults(drop_lines=1),
    "dropped lines": ConsoleFaults(drop_lines=3),
    "duplicated lines": ConsoleFaults(duplicate_lines=True),
    "slow device": ConsoleFaults(latency_s=0.05),
    "noise and duplicates": ConsoleFaults(noise=True, duplicate_lines=True),
    "login needs a retry": ConsoleFaults(failed_logins=1),
}


@pytest.mark.parametrize("faults", RECOVERABLE.values(), ids=RECOVERABLE.keys())
def test_recoverable_faults_succeed_after_retries(
    driver: LinuxConsoleDriver, console: SimulatedConsole, faults: ConsoleFaults
) -> None:
    console.faults.__dict__.update(faults.__dict__)
    assert driver.identify().serial == "007-888-ABC"
    console.faults.__dict__.update(faults.__dict__)  # re-arm counted faults for the flash
    assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    assert console.flashed_files() == {CONFIG_PATH: CONFIG}


NEVER_VERIFIED = {
    "corrupted write": ConsoleFaults(corrupt_write=True),
    "wrong read-back hash": ConsoleFaults(wrong_hash=True),
    "corrupted write with noise": ConsoleFaults(corrupt_write=True, noise=True, duplicate_lines=True),
}


@pytest.mark.parametrize("faults", NEVER_VERIFIED.values(), ids=NEVER_VERIFIED.keys())
def test_unverifiable_writes_never_report_success(
    driver: LinuxConsoleDriver, console: SimulatedConsole, faults: ConsoleFaults
) -> None:
    console.faults.__dict__.update(faults.__dict__)
    with pytest.raises(
        FlashError, match=r"in 3 attempts; last: read-back of /etc/aziot/config\.toml"
    ) as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable


def test_wrong_password_is_a_permanent_login_failure(console: SimulatedConsole) -> None:
    drv = LinuxConsoleDriver(PySerialLink(console.port), ConsoleCredentials("root", "nope"), FAST)
    try:
        with pytest.raises(LoginFailed, match="refused 3 times") as caught:
            drv.identify()
        assert not caught.value.retryable
        assert "nope" not in repr(ConsoleCredentials("root", "nope"))
    finally:
        drv.close()


def test_device_too_slow_raises_no_response(driver: LinuxConsoleDriver, console: SimulatedConsole) -> None:
    driver.identify()
    console.faults.latency_s = 1.0
    started = time.monotonic()
    with pytest.raises(NoResponse, match="no usable answer to `cat /sys/class/net/eth0/address`"):
        driver.identify()
    assert time.monotonic() - started < 6


def test_persistently_dropped_output_fails_the_flash_with_reason(
    driver: LinuxConsoleDriver, console: SimulatedConsole
) -> None:
    driver.identify()
    console.faults.drop_lines = 1000
    with pytest.raises(FlashError, match=r"could not write and verify .* last: ") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable
    assert console.flashed_files() == {}


def test_unplugged_mid_flash_raises_flash_error(
    driver: LinuxConsoleDriver, console: SimulatedConsole
) -> None:
    console.faults.disconnect_after_chunks = 2
    with pytest.raises(FlashError, match="console vanished while flashing") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable and isinstance(caught.value, PortVanished)
    assert console.flashed_files() == {}


def test_refused_write_is_a_permanent_flash_error(driver: LinuxConsoleDriver) -> None:
    with pytest.raises(FlashError, match="Read-only file system") as caught:
        driver.write_config("/sys/class/net/eth0/address", b"x")
    assert not caught.value.retryable
    with pytest.raises(FlashError, match="not an absolute file path"):
        driver.write_config("etc/relative", b"x")


def test_four_consoles_flash_concurrently(tmp_path: Path) -> None:
    consoles = [
        SimulatedConsole(f"SN-{i}", f"02:00:00:00:00:0{i}", "M", "OS", tmp_path / str(i)).start()
        for i in range(4)
    ]
    results: dict[int, str] = {}

    def flash(index: int) -> None:
        drv = _driver(consoles[index])
        try:
            content = CONFIG + str(index).encode()
            assert drv.identify().serial == f"SN-{index}"
            results[index] = drv.write_config(CONFIG_PATH, content)
        finally:
            drv.close()

    threads = [threading.Thread(target=flash, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for console in consoles:
        console.stop()
    assert results == {i: hashlib.sha256(CONFIG + str(i).encode()).hexdigest() for i in range(4)}


def test_driver_registry_lists_and_loads_builtin_drivers(console: SimulatedConsole) -> None:
    assert {"line-protocol", "linux-console"} <= set(available_drivers())
    assert callable(load_driver_factory("line-protocol", baudrate=115_200))
    open_driver = load_driver_factory(
        "linux-console", username="root", password="edgeline", command_timeout=0.5
    )
    drv = open_driver(console.port)
    try:
        assert drv.identify().serial == "007-888-ABC"
    finally:
        drv.close()


def test_unknown_driver_lists_available_ones() -> None:
    with pytest.raises(
        LookupError, match=r"unknown driver 'nope'; available: .*line-protocol, linux-console"
    ):
        load_driver_factory("nope")


def test_bad_serial_source_fails_when_the_factory_is_built() -> None:
    with pytest.raises(ValueError, match="serial source 'eeprom'"):
        load_driver_factory("linux-console", username="u", password="p", serial_source="eeprom")


def _wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
