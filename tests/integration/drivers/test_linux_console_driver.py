"""What only `LinuxConsoleDriver` and `SimulatedConsole` have, on real pseudo-terminals (no mocks).

The cases every driver shares (identify, verified flash, corrupted read-back, recoverable faults,
unplugged mid-flash, reboot) are in test_conformance.py. Here: serial sources, sudo and
`iotedge config apply`, login refusals, console-specific failures, and the driver registry.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from driver_samples import CONFIG, CONFIG_PATH, SHA

from stations.drivers.linux_console.conformance import FAST
from stations.drivers.linux_console.driver import ConsoleOptions, LinuxConsoleDriver, LoginFailed
from stations.drivers.linux_console.session import ConsoleCredentials
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, SimulatedConsole
from stations.drivers.registry import available_drivers, load_driver_factory
from stations.errors import FlashError, NoResponse
from stations.link import PySerialLink

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated consoles need POSIX pseudo-terminals"),
    pytest.mark.timeout(30),
]


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
        wait_until(lambda: booted == [console.flash_dir / "etc/empty"], 2.0, "the boot")
        assert drv.identify().serial == "007-888-ABC"  # logs in again after the reboot
    finally:
        drv.close()


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


def test_refused_write_is_a_permanent_flash_error(driver: LinuxConsoleDriver) -> None:
    with pytest.raises(FlashError, match="Read-only file system") as caught:
        driver.write_config("/sys/class/net/eth0/address", b"x")
    assert not caught.value.retryable
    with pytest.raises(FlashError, match="not an absolute file path"):
        driver.write_config("etc/relative", b"x")


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
