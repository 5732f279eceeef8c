"""Every installed device driver against its own simulator on real pseudo-terminals (no mocks).

Drivers are found through the `edgeline.drivers` entry points, each with the `SimulatorKit` of its
package (`<package>.conformance.conformance_kit()`), so a new driver family is tested here by
installing it. What every driver must do: identify; flash with a verified read-back, stored 0600,
rework and large files; never report success when the read-back disagrees; survive the faults its
retries are for; fail cleanly when the device vanishes mid-flash; reboot into the flashed config.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from driver_samples import CONFIG, CONFIG_PATH, SHA

from pipeline.domain.identity import DeviceIdentity
from stations.drivers.port import DeviceDriver, SimulatedUnit, SimulatorKit
from stations.drivers.registry import GROUP
from stations.errors import FlashError, PortVanished

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="simulated devices need POSIX pseudo-terminals"),
    pytest.mark.timeout(60),
]

Kit = SimulatorKit[Any]


def _kits() -> dict[str, Kit]:
    kits = {}
    for entry in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        kits[entry.name] = importlib.import_module(f"{entry.module}.conformance").conformance_kit()
    return kits


KITS = _kits()


def _cases(faults: str) -> list[Any]:
    return [
        pytest.param(name, fault, id=f"{name}-{fault}")
        for name, kit in KITS.items()
        for fault in getattr(kit, faults)
    ]


@pytest.fixture
def booted() -> list[Path]:
    return []


@pytest.fixture(params=sorted(KITS))
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def device(family: str, tmp_path: Path, booted: list[Path]) -> Iterator[SimulatedUnit]:
    sim = KITS[family].simulator(
        "007-888-ABC",
        "A1:B2:C3:D4:E5:F6",
        "EdgeGW 200",
        "EdgeOS 4.2",
        tmp_path / "flash",
        on_boot=booted.append,
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def driver(family: str, device: SimulatedUnit) -> Iterator[DeviceDriver]:
    drv = KITS[family].open_driver(device.port)
    yield drv
    drv.close()


def test_every_installed_driver_has_a_conformance_kit() -> None:
    assert {"line-protocol", "linux-console"} <= set(KITS)


def test_identify_gives_the_identity_the_device_reports(driver: DeviceDriver) -> None:
    info = driver.identify()
    assert (info.serial, info.model, info.firmware) == ("007-888-ABC", "EdgeGW 200", "EdgeOS 4.2")
    assert info.mac.upper() == "A1:B2:C3:D4:E5:F6"
    identity = DeviceIdentity.parse(info.serial, info.mac)
    assert identity.registration_id() == "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


def test_flash_is_verified_by_read_back_and_stored_0600(driver: DeviceDriver, device: SimulatedUnit) -> None:
    assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    assert device.flashed_files() == {CONFIG_PATH: CONFIG}
    assert (device.flash_dir / "etc/aziot/config.toml").stat().st_mode & 0o777 == 0o600


def test_rework_flashes_again_and_large_and_empty_files_work(
    driver: DeviceDriver, device: SimulatedUnit
) -> None:
    driver.write_config(CONFIG_PATH, b"old")
    big = os.urandom(10_000)
    assert driver.write_config(CONFIG_PATH, big) == hashlib.sha256(big).hexdigest()
    assert driver.write_config("/etc/empty", b"") == hashlib.sha256(b"").hexdigest()
    assert device.flashed_files() == {CONFIG_PATH: big, "/etc/empty": b""}


def test_reboot_boots_the_flashed_config_and_the_device_answers_again(
    driver: DeviceDriver, device: SimulatedUnit, booted: list[Path]
) -> None:
    driver.write_config(CONFIG_PATH, CONFIG)
    driver.reboot()
    wait_until(lambda: booted == [device.flash_dir / "etc/aziot/config.toml"], 5.0, "the boot")
    assert driver.identify().serial == "007-888-ABC"


@pytest.mark.parametrize(("family", "fault"), _cases("unverifiable"), indirect=["family"])
def test_unverifiable_writes_never_report_success(
    family: str, fault: str, driver: DeviceDriver, device: SimulatedUnit
) -> None:
    KITS[family].unverifiable[fault](device)
    with pytest.raises(FlashError, match=r"read-back of /etc/aziot/config\.toml") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable


@pytest.mark.parametrize(("family", "fault"), _cases("recoverable"), indirect=["family"])
def test_recoverable_faults_succeed_after_retries(
    family: str, fault: str, driver: DeviceDriver, device: SimulatedUnit
) -> None:
    arm = KITS[family].recoverable[fault]
    arm(device)
    assert driver.identify().serial == "007-888-ABC"
    arm(device)  # re-arm counted faults for the flash
    assert driver.write_config(CONFIG_PATH, CONFIG) == SHA
    assert device.flashed_files() == {CONFIG_PATH: CONFIG}


def test_device_gone_mid_flash_is_a_retryable_port_vanished(
    family: str, driver: DeviceDriver, device: SimulatedUnit
) -> None:
    KITS[family].unplug_mid_flash(device)
    with pytest.raises(FlashError, match="while flashing") as caught:
        driver.write_config(CONFIG_PATH, CONFIG)
    assert caught.value.retryable
    assert isinstance(caught.value, PortVanished)  # one "unplugged" handler serves every driver
    assert device.flashed_files() == {}
    with pytest.raises(PortVanished):
        driver.identify()


def test_four_devices_flash_concurrently(family: str, tmp_path: Path) -> None:
    kit = KITS[family]
    devices = [
        kit.simulator(f"SN-{i}", f"02:00:00:00:00:0{i}", "M", "OS", tmp_path / str(i)) for i in range(4)
    ]
    results: dict[int, str] = {}

    def flash(index: int) -> None:
        drv = kit.open_driver(devices[index].port)
        try:
            assert drv.identify().serial == f"SN-{index}"
            results[index] = drv.write_config(CONFIG_PATH, CONFIG + str(index).encode())
        finally:
            drv.close()

    for sim in devices:
        sim.start()
    threads = [threading.Thread(target=flash, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sim in devices:
        sim.stop()
    assert results == {i: hashlib.sha256(CONFIG + str(i).encode()).hexdigest() for i in range(4)}
