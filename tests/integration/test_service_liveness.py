"""Liveness job (pipeline.service.liveness): assigned units become `online` / `not_online` from the hub.

Real parts: the migrated database (SQLite and PostgreSQL), the emulator over HTTPS, azure-iot-hub's
registry manager, and a simulated IoT Edge runtime reporting to the emulated hub with the device's key.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import service_helpers
from service_helpers import HUB, World, to_flashed

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_device import HttpModuleReporter
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.cli.main import main
from pipeline.domain.events import UnitNotOnline, UnitOnline
from pipeline.domain.model import UnitState
from pipeline.emulator.hub_modules import module_of
from pipeline.scheduler.jobs import PipelineScheduler
from pipeline.service.confirming import confirm_due_units
from pipeline.service.context import Context
from pipeline.service.enrolling import ensure_group
from pipeline.service.liveness import check_liveness
from stations.simulation.edge_runtime import SimulatedEdgeRuntime

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture
TIMEOUT = 60.0


@pytest.fixture
def registrar() -> Iterator[HttpDeviceRegistrar]:
    device = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield device
    device.close()


@pytest.fixture
def reporter(world: World) -> Iterator[HttpModuleReporter]:
    emulator = world.emulator
    device = HttpModuleReporter({HUB: f"https://127.0.0.1:{emulator.hub_port(HUB)}"}, verify=emulator.ca_file)
    yield device
    device.close()


def liveness_context(world: World, **overrides: object) -> Context:
    settings: dict[str, object] = {
        "online_check": True,
        "online_timeout_seconds": TIMEOUT,
        "online_check_interval_seconds": 0,
    }
    ctx = world.context("group", **{**settings, **overrides})
    ensure_group(ctx)
    world.add_station(ctx, "S1")
    hub = AzureHubRegistry({HUB: world.emulator.hub_connection_string(HUB)}, verify=world.emulator.ca_file)
    return dataclasses.replace(ctx, hub=hub)


def assigned_unit(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, runtime: SimulatedEdgeRuntime | None
) -> str:
    """Flash a unit, let its device register (and its runtime report), confirm it `assigned`."""
    rid = to_flashed(world, ctx)
    config = world.config_of(rid)
    result = registrar.register(
        global_endpoint=config.global_endpoint,
        id_scope=config.id_scope,
        registration_id=config.registration_id,
        key=config.device_key,
        timeout=10,
    )
    assert result.status == "assigned" and result.assigned_hub == HUB
    if runtime is not None:
        runtime.start(HUB, result.device_id or rid, config.device_key)
    assert confirm_due_units(ctx, on_assigned=lambda units: None) == 1
    return rid


def test_running_runtime_makes_the_unit_online(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "running"))

    assert check_liveness(ctx) == 1

    unit = world.unit(rid)
    assert unit.state is UnitState.ONLINE and unit.failure is None
    assert "online" in unit.stage_times
    [record] = [r for r in world.audit(rid) if r.kind == "unit.online"]
    assert record.detail["outcome"] == "IoT Edge runtime running"
    [(topic, event)] = world.outbox_of(UnitOnline, rid)
    assert topic.endswith("/v1/units/events/unit.online")
    assert (event.assigned_hub, event.device_id) == (HUB, rid)
    assert check_liveness(ctx) == 0  # nothing left to look at


def test_runtime_that_never_connects_is_not_online_after_the_timeout(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "never_connects"))

    assert check_liveness(ctx) == 0
    assert world.unit(rid).state is UnitState.ASSIGNED
    world.clock.advance(seconds=TIMEOUT + 1)
    assert check_liveness(ctx) == 1

    unit = world.unit(rid)
    assert unit.state is UnitState.NOT_ONLINE
    assert unit.failure is not None and unit.failure.stage == "online"
    assert unit.failure.reason.startswith("never connected")
    [(_, event)] = world.outbox_of(UnitNotOnline, rid)
    assert event.reason == unit.failure.reason and event.assigned_hub == HUB


def test_hub_outage_never_times_a_unit_out(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "never_connects"))
    world.clock.advance(seconds=TIMEOUT + 1)
    world.emulator.set_faults(throttle=True)  # every hub call answers 429
    try:
        assert check_liveness(ctx) == 0
    finally:
        world.emulator.set_faults()
    assert world.unit(rid).state is UnitState.ASSIGNED
    assert check_liveness(ctx) == 1  # the hub answers again: now the timeout counts
    unit = world.unit(rid)
    assert unit.failure is not None and unit.failure.reason.startswith("never connected")


def test_runtime_error_is_reported_with_the_runtime_own_words(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world, online_timeout_seconds=0)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "runtime_error"))

    assert check_liveness(ctx) == 1

    unit = world.unit(rid)
    assert unit.state is UnitState.NOT_ONLINE and unit.failure is not None
    assert "runtime error" in unit.failure.reason and "Error creating edgeHub" in unit.failure.reason


def test_deployment_requires_edge_hub_running(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "running"))
    with world.emulator.hub_registry.lock:  # a deployment targets the device; edgeHub then stops
        device = world.emulator.hub_registry.get(HUB, rid)
        assert device is not None
        agent = module_of(device, "$edgeAgent")
        assert agent is not None
        agent.desired["systemModules"] = {"edgeHub": {"status": "running"}}
        agent.reported["systemModules"]["edgeHub"]["runtimeStatus"] = "stopped"

    assert check_liveness(ctx) == 0
    world.clock.advance(seconds=TIMEOUT + 1)
    assert check_liveness(ctx) == 1
    unit = world.unit(rid)
    assert unit.failure is not None and unit.failure.reason.startswith("runtime error: edgeHub is stopped")


def test_device_missing_from_its_hub_is_reported_as_wrong_hub(
    world: World, registrar: HttpDeviceRegistrar, reporter: HttpModuleReporter
) -> None:
    ctx = liveness_context(world, online_timeout_seconds=0)
    rid = assigned_unit(world, ctx, registrar, SimulatedEdgeRuntime(reporter, "running"))
    with world.emulator.hub_registry.lock:
        del world.emulator.hub_registry.devices(HUB)[rid]

    assert check_liveness(ctx) == 1
    unit = world.unit(rid)
    assert unit.failure is not None and unit.failure.reason.startswith(f"wrong hub: device {rid}")


def test_off_by_default_nothing_changes(world: World, registrar: HttpDeviceRegistrar) -> None:
    ctx = liveness_context(world, online_check=False)
    rid = assigned_unit(world, ctx, registrar, None)

    assert check_liveness(ctx) == 0
    assert world.unit(rid).state is UnitState.ASSIGNED
    scheduler = PipelineScheduler(ctx)
    assert "liveness" not in [job.id for job in scheduler._scheduler.get_jobs()]  # off: no liveness job
    on = PipelineScheduler(
        dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, online_check=True))
    )
    assert "liveness" in [job.id for job in on._scheduler.get_jobs()]


def test_up_refuses_online_check_without_hub_connection_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "EDGELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
        "EDGELINE_MQTT_URL": "mqtt://127.0.0.1:9",
        "EDGELINE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "EDGELINE_ENROLLMENT_MODE": "individual",
        "EDGELINE_ONLINE_CHECK": "true",
        "EDGELINE_DPS_CONNECTION_STRING": "HostName=127.0.0.1:9;SharedAccessKeyName=provisioningserviceowner;"
        f"SharedAccessKey={base64.b64encode(os.urandom(32)).decode()}",
        "EDGELINE_DPS_ID_SCOPE": "0ne00000001",
        "EDGELINE_DPS_GLOBAL_ENDPOINT": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EDGELINE_IOT_HUB_CONNECTION_STRINGS", raising=False)
    assert main(["up"]) == 2  # a settings problem, found before anything starts
    error = capsys.readouterr().err.strip()
    assert error.startswith("edgeline up: online_check needs iot_hub_connection_strings")
    assert "\n" not in error
