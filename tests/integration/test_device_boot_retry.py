"""The simulated IoT Edge device keeps trying DPS through a 429 storm, as aziot-identityd does (#11 defect 5).

Real parts: the DPS emulator over HTTPS with its throttle fault switched on, a real flashed config.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import service_helpers
from service_helpers import CountingTransport, World, to_config_issued

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.pacing import Backoff
from pipeline.crypto.envelope import open_from_pipeline
from pipeline.domain.events import FlashConfig
from pipeline.service.enrolling import ensure_group
from stations.simulation.boot import ProvisioningRetry, boot

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def registrar(world: World, transport: CountingTransport) -> Iterator[HttpDeviceRegistrar]:
    device = HttpDeviceRegistrar(
        poll_interval=0.05,
        max_poll_interval=0.2,
        backoff=Backoff(base=0.01, cap=0.02, max_attempts=2),  # the HTTP layer gives up fast
        verify=world.emulator.ca_file,
        transport=transport,
    )
    yield device
    device.close()


def flashed_device(world: World, tmp_path: Path) -> Path:
    """A device's flash folder holding the config the pipeline issued for a new unit."""
    ctx = world.context("group")
    ensure_group(ctx)
    world.add_station(ctx, "S1")
    rid = to_config_issued(ctx)
    [(_, command)] = world.outbox_of(FlashConfig, rid)
    content = open_from_pipeline(
        world.station_keys["S1"], command.envelope, station_name="S1", registration_id=rid
    )
    target = tmp_path / command.config_path.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return tmp_path


def tiny(low: float, high: float) -> float:
    return low  # the backoff alone would retry almost at once: only Retry-After spaces the attempts


def test_device_rides_out_a_throttle_storm_honouring_retry_after(
    world: World, registrar: HttpDeviceRegistrar, transport: CountingTransport, tmp_path: Path
) -> None:
    flash = flashed_device(world, tmp_path)
    world.emulator.set_faults(throttle=True)  # every request: 429, Retry-After 1
    lift = threading.Timer(4.0, world.emulator.set_faults)
    lift.start()
    started = time.monotonic()
    try:
        result = boot(
            flash, registrar, timeout=10, retry=ProvisioningRetry(60, base=0.001, cap=0.01), rng=tiny
        )
    finally:
        lift.cancel()

    assert result.status == "assigned", result.error_message
    assert time.monotonic() - started >= 4.0
    puts = transport.count("PUT", "/register")
    # more than the old 6-attempt budget would have survived, yet spaced by Retry-After (1 s), not hammering
    assert 3 <= puts <= 8, puts


def test_device_gives_up_only_after_its_configured_time(
    world: World, registrar: HttpDeviceRegistrar, transport: CountingTransport, tmp_path: Path
) -> None:
    flash = flashed_device(world, tmp_path)
    world.emulator.set_faults(throttle=True)
    started = time.monotonic()

    result = boot(flash, registrar, timeout=10, retry=ProvisioningRetry(3.0, base=0.001, cap=0.01), rng=tiny)

    elapsed = time.monotonic() - started
    assert result.status == "failed"
    assert result.error_message is not None and "gave up after" in result.error_message
    assert 2.0 <= elapsed <= 8.0
    assert transport.count("PUT", "/register") >= 2


def test_a_switched_off_device_stops_trying(
    world: World, registrar: HttpDeviceRegistrar, tmp_path: Path
) -> None:
    flash = flashed_device(world, tmp_path)
    world.emulator.set_faults(throttle=True)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()

    result = boot(flash, registrar, timeout=10, retry=ProvisioningRetry(600), stop=stop)

    assert result.status == "failed" and stop.is_set()


def test_backoff_grows_is_capped_and_never_undercuts_retry_after() -> None:
    policy = ProvisioningRetry(base=1.0, cap=8.0)
    highest = [policy.delay(n, None, lambda low, high: high) for n in range(6)]
    assert highest == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.delay(0, None, lambda low, high: low) == 0.5
    assert policy.delay(0, 10.0, lambda low, high: high) == 10.0
