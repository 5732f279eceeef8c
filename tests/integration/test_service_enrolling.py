"""Enroller (pipeline.service.enrolling) against the DPS emulator over HTTP and a real database."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import service_helpers
from service_helpers import CountingTransport, World, deliver, envelope, scan, to_keyed

from pipeline.domain.events import FlashConfig, UnitEnrolled, UnitFailed, UnitKeyed
from pipeline.domain.model import UnitState
from pipeline.service.context import Context
from pipeline.service.enrolling import BULK_LIMIT, ensure_group, handle_keyed

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


def test_group_mode_enrolls_without_per_unit_dps_calls(world: World) -> None:
    transport = CountingTransport()
    ctx = world.context("group", transport=transport)
    group_id = ensure_group(ctx)
    world.add_station(ctx)
    assert ctx.dps.get_enrollment_group(group_id) is not None
    before = len(transport.requests)

    rid = to_keyed(ctx)  # the keyer enrolls and configures in the same transaction

    assert len(transport.requests) == before
    assert world.unit(rid).state is UnitState.CONFIG_ISSUED
    [enrolled] = [r for r in world.audit(rid) if r.kind == "unit.enrolled"]
    assert enrolled.detail["enrollment_id"] == group_id
    assert world.outbox_of(UnitKeyed, rid) == world.outbox_of(UnitEnrolled, rid) == []
    assert world.emulator.dump()["dps"]["enrollments"] == []


def test_a_group_unit_left_keyed_is_enrolled_and_configured_when_re_driven(world: World) -> None:
    """A `unit.keyed` for a group unit (the reconciler's, or an older worker's) finishes the step."""
    ctx = world.line_ready()
    rid = to_keyed(ctx)
    with world.db.uow() as uow:  # as an older worker that handed `unit.keyed` over on the bus left it
        unit = uow.units.get(rid, for_update=True)
        assert unit is not None
        unit.state, unit.config_sha256 = UnitState.KEYED, None
        uow.units.save(unit)
        uow.commit()

    deliver(ctx, handle_keyed, UnitKeyed(registration_id=rid, mode="group"))

    assert world.unit(rid).state is UnitState.CONFIG_ISSUED
    assert len(world.outbox_of(FlashConfig, rid)) == 2  # the first visit's command and this one
    assert world.outbox_of(UnitEnrolled, rid) == []


def test_ensure_group_twice_keeps_one_group_and_its_key(world: World) -> None:
    ctx = world.context("group")
    ensure_group(ctx)
    with world.db.uow() as uow:
        first = uow.groups.get(ctx.settings.group_id())
    ensure_group(ctx)
    with world.db.uow() as uow:
        assert uow.groups.get(ctx.settings.group_id()) == first
    assert len(world.emulator.dump()["dps"]["enrollmentGroups"]) == 1


def test_individual_mode_enrolls_waiting_units_in_bulk(world: World) -> None:
    transport = CountingTransport()
    ctx = world.context("individual", transport=transport)
    rids = [to_keyed(ctx) for _ in range(15)]
    keyed_events = {m.registration_id: m for _, m in world.outbox_of(UnitKeyed)}

    deliver(ctx, handle_keyed, keyed_events[rids[0]])

    assert transport.count("POST", "/enrollments") == 1
    enrolled = [rid for rid in rids if world.unit(rid).state is UnitState.ENROLLED]
    assert len(enrolled) == BULK_LIMIT
    assert rids[0] in enrolled
    assert len(world.emulator.dump()["dps"]["enrollments"]) == BULK_LIMIT
    info = ctx.dps.get_individual_enrollment(rids[0])
    assert info is not None and info.iot_edge and info.provisioning_status == "enabled"

    for rid in rids[1:]:
        deliver(ctx, handle_keyed, keyed_events[rid])

    assert all(world.unit(rid).state is UnitState.ENROLLED for rid in rids)
    assert len(world.emulator.dump()["dps"]["enrollments"]) == 15
    assert transport.count("POST", "/enrollments") == 2  # the 5 left over went in one more call
    assert sorted(m.registration_id for _, m in world.outbox_of(UnitEnrolled)) == sorted(rids)


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_bulk_enrollment_leaves_units_another_transaction_holds(world: World) -> None:
    """A keyed unit locked elsewhere (another handler thread's batch) is neither waited for nor taken:
    waiting could deadlock with a batch that wants this handler's unit in turn."""
    ctx = world.context("individual")
    mine, held = to_keyed(ctx), to_keyed(ctx)
    keyed = {m.registration_id: m for _, m in world.outbox_of(UnitKeyed)}
    done = threading.Event()
    with world.db.uow() as other:
        assert other.units.get(held, for_update=True) is not None  # another batch holds this unit
        worker = threading.Thread(target=lambda: (deliver(ctx, handle_keyed, keyed[mine]), done.set()))
        worker.start()
        finished = done.wait(15)
        other.rollback()
    worker.join(15)

    assert finished, "the enroller waited for a unit another transaction holds"
    assert world.unit(mine).state is UnitState.ENROLLED
    assert world.unit(held).state is UnitState.KEYED  # left to the transaction that holds it

    deliver(ctx, handle_keyed, keyed[held])
    assert world.unit(held).state is UnitState.ENROLLED


def test_replay_after_success_is_a_no_op(world: World) -> None:
    transport = CountingTransport()
    ctx = world.context("individual", transport=transport)
    rid = to_keyed(ctx)
    env = envelope(UnitKeyed(registration_id=rid, mode="individual"))
    handle_keyed(ctx, env)
    requests, outbox = len(transport.requests), len(world.outbox())

    handle_keyed(ctx, env)  # the same delivery again
    handle_keyed(ctx, envelope(UnitKeyed(registration_id=rid, mode="individual")))  # a re-emitted event

    assert len(transport.requests) == requests
    assert len(world.outbox()) == outbox
    assert world.unit(rid).state is UnitState.ENROLLED
    assert len(world.emulator.dump()["dps"]["enrollments"]) == 1


def test_rescanned_unit_re_enrolls_with_the_same_key(world: World) -> None:
    ctx = world.context("individual")
    message = scan()
    rid = to_keyed(ctx, message)
    deliver(ctx, handle_keyed, UnitKeyed(registration_id=rid, mode="individual"))
    to_keyed(ctx, message)  # rework: keyed again, same sealed key

    deliver(ctx, handle_keyed, UnitKeyed(registration_id=rid, mode="individual"))

    unit = world.unit(rid)
    assert (unit.state, unit.rework_count) == (UnitState.ENROLLED, 1)
    assert len(world.emulator.dump()["dps"]["enrollments"]) == 1


def test_dps_down_fails_units_retryably_at_enroll(world: World) -> None:
    ctx = world.context("individual")
    rids = [to_keyed(ctx) for _ in range(3)]
    world.emulator.set_faults(error_rate_5xx=1.0)

    deliver(ctx, handle_keyed, UnitKeyed(registration_id=rids[0], mode="individual"))

    for rid in rids:
        unit = world.unit(rid)
        assert unit.state is UnitState.FAILED
        assert unit.failure is not None
        assert (unit.failure.stage, unit.failure.retryable, unit.attempts) == ("enroll", True, 1)
        assert "DPS" in unit.failure.reason
        assert "500" in unit.failure.reason
    failed = [m for _, m in world.outbox_of(UnitFailed)]
    assert sorted(m.registration_id for m in failed) == sorted(rids)
    assert all(m.stage == "enroll" and m.retryable for m in failed)


def test_two_workers_starting_at_once_share_one_set_of_group_keys(world: World) -> None:
    """Both create the group on an empty database at the same moment: one wins, the other uses its keys."""
    ctxs = [world.context("group"), world.context("group")]
    sealer = ctxs[0].sealer
    ctxs[1] = dataclasses.replace(ctxs[1], sealer=sealer)  # one master key, as on one line
    start, errors = threading.Barrier(2), []

    def run(ctx: Context) -> None:
        start.wait()
        try:
            ensure_group(ctx)
        except Exception as exc:  # the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in ctxs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    created = [r for r in world.audit() if r.kind == "group.created"]
    assert len(created) == 1
    assert len(world.emulator.dump()["dps"]["enrollmentGroups"]) == 1
