"""Device-side IoT Edge checks (`iotedge system status`, `iotedge check --output json`) over a real pty."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stations.drivers.linux_console.driver import ConsoleOptions, LinuxConsoleDriver
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, SimulatedConsole
from stations.errors import FlashError
from stations.link import PySerialLink

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated consoles need POSIX pseudo-terminals"),
    pytest.mark.timeout(60),
]

CONFIG_PATH = "/etc/aziot/config.toml"
CONFIG = b'[provisioning]\nsource = "dps"\n'
CHECKING = ConsoleOptions(
    command_timeout=1.0, prompt_timeout=2.0, apply=True, edge_checks=True, check_timeout=5
)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[SimulatedConsole]:
    sim = SimulatedConsole("007-888-ABC", "A1:B2:C3:D4:E5:F6", "EdgeGW 200", "EdgeOS 4.2", tmp_path / "flash")
    with sim:
        yield sim


@pytest.fixture
def driver(console: SimulatedConsole) -> Iterator[LinuxConsoleDriver]:
    drv = LinuxConsoleDriver(PySerialLink(console.port), DEFAULT_CREDENTIALS, CHECKING)
    yield drv
    drv.close()


def test_healthy_runtime_passes_and_the_summary_is_kept(driver: LinuxConsoleDriver) -> None:
    assert driver.write_config(CONFIG_PATH, CONFIG) == hashlib.sha256(CONFIG).hexdigest()
    assert driver.last_edge_check is not None
    assert driver.last_edge_check.problems == ()
    assert driver.last_edge_check.summary == "5 aziot services up; iotedge check: 3 ok, 1 warning"


def test_broken_runtime_fails_the_flash_with_the_checks_own_words(
    driver: LinuxConsoleDriver, console: SimulatedConsole
) -> None:
    console.faults.edge_runtime_error = True
    with pytest.raises(FlashError) as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert not caught.value.retryable
    message = str(caught.value)
    assert message.startswith("IoT Edge check failed: aziot-edged is Stopped")
    assert (
        "iotedge check host-connect-dps-endpoint: error: Could not connect to global.azure-devices" in message
    )
    assert not list((console.flash_dir / "tmp").iterdir())  # the check's file is cleaned up


def test_checks_are_off_by_default(console: SimulatedConsole) -> None:
    console.faults.edge_runtime_error = True
    drv = LinuxConsoleDriver(
        PySerialLink(console.port), DEFAULT_CREDENTIALS, ConsoleOptions(command_timeout=1.0)
    )
    try:
        assert drv.write_config(CONFIG_PATH, CONFIG) == hashlib.sha256(CONFIG).hexdigest()
        assert drv.last_edge_check is None
    finally:
        drv.close()
