"""Reconciler (pipeline.service.reconciling): stuck units are re-driven, retryable failures retried."""

from __future__ import annotations

import service_helpers
from service_helpers import World, deliver, to_config_issued, to_keyed

from pipeline.domain.events import FlashConfig, FlashFailed, UnitEnrolled, UnitKeyed
from pipeline.domain.model import Failure, UnitState
from pipeline.service.context import Context
from pipeline.service.flashing import handle_flash_failed
from pipeline.service.reconciling import MAX_ATTEMPTS, reconcile

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


def fail_flash(world: World, ctx: Context, rid: str, *, retryable: bool) -> None:
    event = FlashFailed(
        registration_id=rid, station="S1", port="p", reason="write error", retryable=retryable
    )
    deliver(ctx, handle_flash_failed, event)
    assert world.unit(rid).state is UnitState.FAILED


def test_stuck_keyed_unit_gets_a_new_keyed_event(world: World) -> None:
    ctx = world.context("individual", reconcile_stuck_seconds=0)  # group-mode units do not rest keyed
    rid = to_keyed(ctx)
    world.clock.advance(seconds=1)

    assert reconcile(ctx) == 1

    assert len(world.outbox_of(UnitKeyed, rid)) == 2
    assert world.unit(rid).state is UnitState.KEYED
    assert "unit.redriven" in [r.kind for r in world.audit(rid)]


def test_stuck_config_issued_unit_gets_the_flash_command_again(world: World) -> None:
    ctx = world.line_ready(reconcile_stuck_seconds=0)
    rid = to_config_issued(ctx)
    world.clock.advance(seconds=1)

    assert reconcile(ctx) == 1

    commands = world.outbox_of(FlashConfig, rid)
    assert len(commands) == 2
    assert world.unit(rid).state is UnitState.CONFIG_ISSUED
    assert commands[0][1].config_sha256 == commands[1][1].config_sha256 == world.unit(rid).config_sha256


def test_recent_units_are_left_alone(world: World) -> None:
    ctx = world.context("individual", reconcile_stuck_seconds=60)
    rid = to_keyed(ctx)
    world.clock.advance(seconds=30)
    assert reconcile(ctx) == 0
    assert len(world.outbox_of(UnitKeyed, rid)) == 1


def test_retryable_flash_failure_goes_back_to_enrolled(world: World) -> None:
    ctx = world.line_ready(reconcile_stuck_seconds=0)
    rid = to_config_issued(ctx)
    fail_flash(world, ctx, rid, retryable=True)
    world.clock.advance(seconds=1)

    assert reconcile(ctx) == 1

    unit = world.unit(rid)
    assert (unit.state, unit.failure, unit.attempts) == (UnitState.ENROLLED, None, 1)
    # The retry's: group mode's enroller hands nothing over on the bus (the keyer issued the config).
    assert len(world.outbox_of(UnitEnrolled, rid)) == 1


def test_non_retryable_failure_is_left_alone(world: World) -> None:
    ctx = world.line_ready(reconcile_stuck_seconds=0)
    rid = to_config_issued(ctx)
    fail_flash(world, ctx, rid, retryable=False)
    world.clock.advance(hours=1)
    outbox = len(world.outbox())

    assert reconcile(ctx) == 0

    assert world.unit(rid).state is UnitState.FAILED
    assert len(world.outbox()) == outbox


def test_failure_after_max_attempts_is_left_alone(world: World) -> None:
    ctx = world.line_ready(reconcile_stuck_seconds=0)
    rid = to_config_issued(ctx)
    with world.db.uow() as uow:
        unit = uow.units.get(rid, for_update=True)
        assert unit is not None
        unit.fail(Failure(stage="flash", reason="write error", retryable=True), world.clock())
        unit.attempts = MAX_ATTEMPTS
        uow.units.save(unit)
        uow.commit()
    world.clock.advance(days=1)

    assert reconcile(ctx) == 0
    assert world.unit(rid).state is UnitState.FAILED


def test_two_workers_reconcilers_retry_each_failed_unit_once(world: World) -> None:
    """Every `edgeline up` runs a reconciler: on one database they split the due units, never both."""
    import threading

    ctx = world.line_ready(reconcile_stuck_seconds=0)
    other = world.context("group", reconcile_stuck_seconds=0)
    rids = [to_config_issued(ctx) for _ in range(12)]
    for rid in rids:
        fail_flash(world, ctx, rid, retryable=True)
    world.clock.advance(seconds=60)
    start = threading.Barrier(2)
    touched: list[int] = []

    def run(c: Context) -> None:
        start.wait()
        touched.append(reconcile(c))

    threads = [threading.Thread(target=run, args=(c,)) for c in (ctx, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(touched) == len(rids)
    for rid in rids:
        retries = [r for r in world.audit(rid) if r.kind == "unit.enrolled" and r.detail.get("retry_of")]
        assert len(retries) == 1, f"{rid} retried {len(retries)} times"
