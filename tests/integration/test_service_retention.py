"""Retention job (pipeline.service.retention): prunes only delivered outbox rows and old processed ids."""

from __future__ import annotations

import service_helpers
from service_helpers import World, to_keyed

from pipeline.service.keying import ACTOR as KEYER
from pipeline.service.retention import prune

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


def _fill(world: World, *, published: int, pending: int, processed: int) -> None:
    at = world.clock()
    with world.db.uow() as uow:
        for n in range(published + pending):
            uow.outbox.add(f"ev-{n}", "t/x", b"{}")
        uow.commit()
    with world.db.uow() as uow:
        items = uow.outbox.pending(published + pending)
        uow.outbox.mark_published([i.id for i in items[:published]], at)
        for n in range(processed):
            uow.processed.record(f"old-{n}", KEYER, at)
        uow.commit()


def _counts(world: World) -> tuple[int, int]:
    with world.db.uow() as uow:
        pending = len(uow.outbox.pending(10_000))
        return pending, sum(uow.processed.seen(f"old-{n}", KEYER) for n in range(50))


def test_prunes_only_published_rows_and_expired_ids_in_chunks(world: World) -> None:
    ctx = world.context("group", retention_batch=7, outbox_retention_hours=1, processed_retention_hours=24)
    _fill(world, published=30, pending=5, processed=20)
    audit_before = len(world.audit())

    world.clock.advance(hours=2)  # outbox rows expired, processed ids not yet
    assert prune(ctx) == 30
    assert _counts(world) == (5, 20)  # unpublished rows stay, whatever their age

    world.clock.advance(hours=23)
    assert prune(ctx) == 20
    assert _counts(world) == (5, 0)
    assert len(world.audit()) == audit_before  # the audit log is never pruned


def test_recent_records_still_make_redelivery_a_no_op(world: World) -> None:
    ctx = world.context("group", processed_retention_hours=1)
    rid = to_keyed(ctx)
    world.clock.advance(minutes=30)
    assert prune(ctx) == 0  # nothing published yet, nothing expired
    with world.db.uow() as uow:
        assert uow.units.get(rid) is not None
        assert len(uow.outbox.pending(100)) == 1  # the unit.keyed event, never deleted unpublished
