"""Revocation reaches the IoT hub: `disable`/`delete` disable the device identity, `enable` restores it.

Real pieces only: the database (both backends), the DPS emulator, a device that really registered (so the
emulated hub holds its identity), the confirmer that records the assignment, and azure-iot-hub's
IoTHubRegistryManager (AzureHubRegistry) talking HTTPS to the emulated hub with its CA (azure-notes §2.7, §9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import service_helpers
import test_enrollment_commands
import test_group_commands
from service_helpers import HUB, World
from test_group_commands import flashed_unit_key, register

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.cli.main import main
from pipeline.domain.model import UnitState
from pipeline.service import revocation
from pipeline.service.confirming import confirm_due_units
from pipeline.service.context import Context

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture
registrar_fixture = test_group_commands.registrar_fixture
ctx = test_enrollment_commands.ctx  # parametrised: individual and group mode, EDGELINE_* set for the CLI


@pytest.fixture
def hub(world: World) -> Iterator[AzureHubRegistry]:
    """The real SDK on the emulated hub, trusting the emulator's CA."""
    registry = AzureHubRegistry(
        {HUB: world.emulator.hub_connection_string(HUB)}, verify=world.emulator.ca_file
    )
    yield registry
    registry.close()


def assigned_unit(world: World, ctx: Context, registrar: HttpDeviceRegistrar) -> str:
    """A unit whose device registered (hub identity created) and whose assignment was confirmed."""
    rid, key = flashed_unit_key(world, ctx)
    assert register(world, registrar, rid, key) == "assigned"
    assert confirm_due_units(ctx) == 1
    unit = world.unit(rid)
    assert (unit.state, unit.assigned_hub, unit.device_id) == (UnitState.ASSIGNED, HUB, rid)
    return rid


def hub_status(hub: AzureHubRegistry, rid: str) -> str:
    device = hub.get_device(HUB, rid)
    assert device is not None and device.iot_edge  # the PUT kept the IoT Edge capability
    return device.status


def test_disable_disables_the_hub_device_and_enable_enables_it(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, hub: AzureHubRegistry
) -> None:
    rid = assigned_unit(world, ctx, registrar)
    with_hub = dataclasses.replace(ctx, hub=hub)

    outcome = revocation.disable_enrollment(with_hub, rid, "RMA 7")

    assert (outcome.hub, outcome.hub_failed) == (f"device {rid} in {HUB} disabled", False)
    assert hub_status(hub, rid) == "disabled"
    assert world.unit(rid).state is UnitState.REVOKED
    [record] = [r for r in world.audit(rid) if r.kind == "enrollment.disabled"]
    assert record.detail["hub"] == outcome.hub and record.detail["hub_failed"] is False

    outcome = revocation.enable_enrollment(with_hub, rid)

    assert (outcome.hub, outcome.hub_failed) == (f"device {rid} in {HUB} enabled", False)
    assert hub_status(hub, rid) == "enabled"
    assert world.unit(rid).state is UnitState.SCANNED


@pytest.mark.parametrize(
    "ctx", ["individual"], indirect=True
)  # group mode refuses delete (test_enrollment_commands)
def test_delete_disables_the_hub_device(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, hub: AzureHubRegistry
) -> None:
    rid = assigned_unit(world, ctx, registrar)

    outcome = revocation.delete_enrollment(dataclasses.replace(ctx, hub=hub), rid, "scrapped")

    assert not outcome.hub_failed
    assert hub_status(hub, rid) == "disabled"
    assert ctx.dps.get_individual_enrollment(rid) is None


def test_unit_never_assigned_has_no_hub_step(world: World, ctx: Context, hub: AzureHubRegistry) -> None:
    rid, _ = flashed_unit_key(world, ctx)

    outcome = revocation.disable_enrollment(dataclasses.replace(ctx, hub=hub), rid)

    assert (outcome.hub, outcome.unit_state) == (None, "revoked")


def test_hub_failure_keeps_the_dps_revocation_and_is_reported(
    world: World,
    ctx: Context,
    registrar: HttpDeviceRegistrar,
    hub: AzureHubRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The configured string names the hub 127.0.0.1:PORT, not the host DPS assigned: the hub step fails."""
    rid = assigned_unit(world, ctx, registrar)
    monkeypatch.setenv("EDGELINE_IOT_HUB_CONNECTION_STRINGS", world.emulator.hub_connection_string(HUB))
    capsys.readouterr()

    assert main(["enrollment", "disable", rid, "--reason", "stolen"]) == 1

    out, err = capsys.readouterr()
    assert f"no connection string for IoT hub {HUB!r}" in out
    assert "the IoT hub step failed" in err and "re-run the same command" in err
    assert world.unit(rid).state is UnitState.REVOKED
    enrollment = ctx.dps.get_individual_enrollment(rid)
    assert enrollment is not None and enrollment.provisioning_status == "disabled"
    assert hub_status(hub, rid) == "enabled"
    [record] = [r for r in world.audit(rid) if r.kind == "enrollment.disabled"]
    assert record.detail["hub_failed"] is True and record.detail["reason"] == "stolen"
