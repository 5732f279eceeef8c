"""Confirmer (pipeline.service.confirming): devices registered with the emulator become `assigned`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import service_helpers
from service_helpers import HUB, CountingTransport, World, to_flashed

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.domain.events import UnitAssigned, UnitFailed
from pipeline.domain.model import UnitState
from pipeline.edgeconfig.model import ParsedProvisioning
from pipeline.scheduler.jobs import PipelineScheduler
from pipeline.service.confirming import GROUP_QUERY_THRESHOLD, PAGE_SIZE, GroupSizes, confirm_due_units
from pipeline.service.context import Context

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def registrar() -> Iterator[HttpDeviceRegistrar]:
    device = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield device
    device.close()


def boot_device(world: World, registrar: HttpDeviceRegistrar, rid: str) -> None:
    """What the device does at first boot: register with DPS using the flashed config."""
    register(registrar, world.config_of(rid))


def register(registrar: HttpDeviceRegistrar, config: ParsedProvisioning) -> None:
    result = registrar.register(
        global_endpoint=config.global_endpoint,
        id_scope=config.id_scope,
        registration_id=config.registration_id,
        key=config.device_key,
        timeout=10,
    )
    assert result.status == "assigned"


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_registered_device_becomes_assigned(world: World, registrar: HttpDeviceRegistrar, mode: str) -> None:
    ctx = world.line_ready(mode)
    rid = to_flashed(world, ctx)
    boot_device(world, registrar, rid)

    assert confirm_due_units(ctx) == 1

    unit = world.unit(rid)
    assert unit.state is UnitState.ASSIGNED
    assert (unit.assigned_hub, unit.device_id, unit.next_check_at) == (HUB, rid, None)
    [(topic, event)] = world.outbox_of(UnitAssigned, rid)
    assert topic.endswith("/v1/units/events/unit.assigned")
    assert (event.assigned_hub, event.device_id) == (HUB, rid)
    assert confirm_due_units(ctx) == 0  # nothing due any more


def test_device_that_never_registers_is_checked_with_backoff(world: World) -> None:
    ctx = world.line_ready("group", confirm_backoff_initial_seconds=10, confirm_backoff_max_seconds=100)
    rid = to_flashed(world, ctx)
    assert confirm_due_units(ctx) == 0  # not due yet
    assert world.unit(rid).checks == 0

    delays = []
    for _ in range(4):
        due_at = world.unit(rid).next_check_at
        assert due_at is not None
        world.clock.now = due_at
        assert confirm_due_units(ctx) == 0
        unit = world.unit(rid)
        assert unit.state is UnitState.FLASHED
        assert unit.next_check_at is not None
        delays.append((unit.next_check_at - world.clock()).total_seconds())
    assert world.unit(rid).checks == 4
    # 10 s * 2**checks with +-20 % jitter, capped at 100 s
    for checks, delay in enumerate(delays, start=1):
        nominal = min(10 * 2**checks, 100)
        assert nominal * 0.8 - 0.01 <= delay <= nominal * 1.2 + 0.01


def test_device_silent_past_the_window_fails_as_stale(world: World) -> None:
    ctx = world.line_ready("individual", confirm_window_hours=0.0001)
    rid = to_flashed(world, ctx)
    world.clock.advance(seconds=1)

    assert confirm_due_units(ctx) == 0

    unit = world.unit(rid)
    assert unit.failure is not None
    assert (unit.state, unit.failure.stage, unit.failure.retryable) == (UnitState.FAILED, "confirm", False)
    assert "did not register" in unit.failure.reason
    [(_, event)] = world.outbox_of(UnitFailed, rid)
    assert event.stage == "confirm"


def test_dps_down_leaves_units_flashed_for_later(world: World) -> None:
    ctx = world.line_ready("individual")
    rid = to_flashed(world, ctx)
    world.emulator.set_faults(error_rate_5xx=1.0)

    assert confirm_due_units(ctx) == 0

    unit = world.unit(rid)
    assert (unit.state, unit.checks) == (UnitState.FLASHED, 1)


def flashed_units(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, count: int, booted: int
) -> list[str]:
    """`count` flashed units; the first `booted` of them boot together and register with DPS."""
    rids = [to_flashed(world, ctx) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=booted) as pool:
        list(
            pool.map(lambda config: register(registrar, config), [world.config_of(r) for r in rids[:booted]])
        )
    return rids


def counting_dps(world: World, ctx: Context, transport: CountingTransport) -> Context:
    """`ctx` with a DPS client whose requests `transport` counts."""
    return dataclasses.replace(ctx, dps=world.context("group", transport=transport).dps)


def test_group_mode_with_many_due_units_uses_the_group_query(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    transport = CountingTransport()
    ctx = world.line_ready("group")
    count = GROUP_QUERY_THRESHOLD + 2
    rids = flashed_units(world, ctx, registrar, count, booted=count - 1)

    assert confirm_due_units(counting_dps(world, ctx, transport)) == count - 1

    assert transport.count("POST", "/query") == 1
    assert transport.count("GET", "/registrations/") == 0
    states = [world.unit(rid).state for rid in rids]
    assert states == [UnitState.ASSIGNED] * (count - 1) + [UnitState.FLASHED]


def test_a_large_group_is_not_paged_for_a_few_due_units(world: World, registrar: HttpDeviceRegistrar) -> None:
    transport = CountingTransport()
    ctx = world.line_ready("group")
    count = GROUP_QUERY_THRESHOLD + 2
    flashed_units(world, ctx, registrar, count, booted=count)
    # An earlier run learned that the group has more pages than units are due now: GETs are cheaper.
    sizes = GroupSizes({ctx.settings.group_id(): PAGE_SIZE * (count + 1)})

    assert confirm_due_units(counting_dps(world, ctx, transport), sizes=sizes) == count

    assert transport.count("POST", "/query") == 0
    assert transport.count("GET", "/registrations/") == count


def test_the_group_query_records_the_group_size(world: World, registrar: HttpDeviceRegistrar) -> None:
    ctx = world.line_ready("group")
    count = GROUP_QUERY_THRESHOLD
    flashed_units(world, ctx, registrar, count, booted=count)
    sizes = GroupSizes()

    assert confirm_due_units(ctx, sizes=sizes) == count

    assert sizes == {ctx.settings.group_id(): count}


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_assigned_unit_is_checked_in_its_hub_through_azure_iot_hub(
    world: World, registrar: HttpDeviceRegistrar, mode: str
) -> None:
    hub = AzureHubRegistry({HUB: world.emulator.hub_connection_string(HUB)}, verify=world.emulator.ca_file)
    ctx = dataclasses.replace(world.line_ready(mode), hub=hub)
    rid = to_flashed(world, ctx)
    boot_device(world, registrar, rid)

    assert confirm_due_units(ctx) == 1  # tags the twin synchronously when no executor is given

    [record] = [r for r in world.audit() if r.kind == "hub.checked" and r.registration_id == rid]
    assert record.detail["outcome"].startswith("ok: IoT Edge identity present")
    device = hub.get_device(HUB, rid)
    assert device is not None and device.iot_edge
    unit = world.unit(rid)
    assert device.tags["serial"] == unit.serial and device.tags["station"] == "S1"
    hub.close()


def test_the_scheduler_keeps_what_one_confirmer_run_learned_for_the_next(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    """The confirmer job of `edgeline up` keeps the group sizes its queries learn between runs (a size
    decides whether the next run queries the group or asks per unit)."""
    ctx = world.line_ready("group")
    group_id = ctx.settings.group_id()
    scheduler = PipelineScheduler(ctx)  # not started: its job is run by hand below
    [confirm] = [job.func for job in scheduler._scheduler.get_jobs() if job.id == "confirmer"]
    try:
        flashed_units(world, ctx, registrar, GROUP_QUERY_THRESHOLD, booted=GROUP_QUERY_THRESHOLD)
        confirm()
        assert scheduler.group_sizes == {group_id: GROUP_QUERY_THRESHOLD}

        flashed_units(world, ctx, registrar, GROUP_QUERY_THRESHOLD, booted=GROUP_QUERY_THRESHOLD)
        confirm()
        assert scheduler.group_sizes == {group_id: 2 * GROUP_QUERY_THRESHOLD}
    finally:
        scheduler._tagger.shutdown(wait=True)  # twin tagging of the assigned units (no hub here) ends
