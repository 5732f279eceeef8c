"""Batched consumer: one transaction per batch, acks after its commit, poison messages, crash recovery.

Messages are queued through `Consumer.on_message` before the handler threads start, so each thread
finds them all waiting and takes them as one batch; real handlers, real database (both backends),
dead letters published to a real Mosquitto. Individual mode, where the keyer's work ends at `keyed` with
one `unit.keyed` event per unit, except where group mode (keyed, enrolled and configured in one step) is
named.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import service_helpers
from service_helpers import World, scan
from sqlalchemy import event
from test_bus_paho import Collector

from pipeline import metrics
from pipeline.bus.cloudevents import Envelope, encode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.db.transient import is_transient_db_error, is_write_conflict
from pipeline.domain.events import UnitKeyed, UnitScanned
from pipeline.domain.model import UnitState
from pipeline.service.consumer import Consumer
from pipeline.service.context import Context
from pipeline.service.messagebus import BATCH_PREPARERS, HANDLERS

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture

if TYPE_CHECKING:
    from conftest import Mosquitto

pytestmark = pytest.mark.mosquitto
UNITS = 12


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler or consumer code catches it."""


@pytest.fixture
def bus(mosquitto: Mosquitto) -> Iterator[PahoBus]:
    client = PahoBus.from_url(
        mosquitto.url, f"test-{uuid.uuid4().hex[:10]}", clean_session=True, shared_subscriptions=False
    )
    client.connect(timeout=5)
    yield client
    client.close()


class Tracker:
    """Acks of inbound messages, and the commits of the test database."""

    def __init__(self, world: World) -> None:
        self.acked: list[str] = []
        self.commits = 0
        self._lock = threading.Lock()
        event.listen(world.db.engine, "commit", self._on_commit)

    def _on_commit(self, conn: object) -> None:
        self.commits += 1

    def inbound(
        self, ctx: Context, message: UnitScanned, check: Callable[[], None] = lambda: None
    ) -> InboundMessage:
        _, payload = encode(message, source=f"edgeline/stations/{message.station}")
        topic = ctx.topics.station_event(message.line, message.station, message.NAME)

        def ack() -> None:
            check()
            with self._lock:
                self.acked.append(message.registration_id)

        return InboundMessage(topic=topic, payload=payload, ack=ack)

    def wait_acks(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"{len(self.acked)} of {count} messages acked"
            time.sleep(0.02)


class StageCounter(metrics.Metrics):
    """Records the stages the consumer reports as completed."""

    def __init__(self) -> None:
        self.completed: list[str] = []

    def stage_completed(self, stage: str, seconds: float) -> None:
        self.completed.append(stage)


def run_to_acks(
    worker: Consumer, tracker: Tracker, ctx: Context, messages: list[UnitScanned], acks: int
) -> None:
    """Queue `messages`, start the handler threads, wait until `acks` messages in all are acked, stop."""
    for message in messages:
        worker.on_message(tracker.inbound(ctx, message))
    worker.start()
    try:
        tracker.wait_acks(acks)
    finally:
        worker.stop()


def _thread_of(message: UnitScanned, threads: int = 2) -> int:
    return zlib.crc32(message.registration_id.encode("utf-8")) % threads


def consumer(ctx: Context, bus: PahoBus, handlers: dict = HANDLERS) -> Consumer:  # type: ignore[type-arg]
    """Two handler threads with the production batch preparers."""
    return Consumer(
        ctx,
        bus,
        handlers,
        is_transient_db_error,
        workers=2,
        batch_size=50,
        is_conflict=is_write_conflict,
        preparers=BATCH_PREPARERS,
    )


def state_of(world: World, rid: str) -> UnitState | None:
    with world.db.uow() as uow:
        unit = uow.units.get(rid)
    return unit.state if unit else None


def totals(world: World) -> tuple[int, int, int]:
    """(units, outbox rows, audit records) in the database."""
    with world.db.uow() as uow:
        units = sum(uow.units.count_by_state().values())
        outbox = len(uow.outbox.pending(10_000))
    return units, outbox, len(world.audit())


@pytest.mark.parametrize(
    "mode, settled", [("individual", UnitState.KEYED), ("group", UnitState.CONFIG_ISSUED)]
)
def test_a_batch_commits_once_and_acks_only_after_its_commit(
    world: World, bus: PahoBus, mode: str, settled: UnitState
) -> None:
    ctx = world.line_ready(mode)
    tracker = Tracker(world)
    scans = [scan() for _ in range(UNITS)]
    worker = consumer(ctx, bus)
    for message in scans:

        def committed(rid: str = message.registration_id) -> None:
            assert state_of(world, rid) is settled, "acked before its transaction committed"

        worker.on_message(tracker.inbound(ctx, message, committed))
    commits_before = tracker.commits
    stages = StageCounter()
    metrics.install(stages)
    worker.start()
    try:
        tracker.wait_acks(UNITS)
    finally:
        worker.stop()
        metrics.install(metrics.NO_METRICS)
    assert stages.completed == ["scanned"] * UNITS  # a batched message counts as one done, as alone
    assert sorted(tracker.acked) == sorted(m.registration_id for m in scans)
    assert totals(world)[:2] == (UNITS, UNITS)  # one unit and one unit.keyed event (or flash.config) each
    # Two handler threads: one transaction each (the ack checks only read, and roll back).
    assert tracker.commits - commits_before <= 2, tracker.commits - commits_before


def test_a_batch_reads_its_station_and_group_once(world: World, bus: PahoBus) -> None:
    """Every unit of a group-mode batch needs the station's key and the group's key: one query each per
    batch (the session's identity map does not keep them between units), not one per unit."""
    ctx = world.line_ready("group")
    tracker = Tracker(world)
    reads = {"stations": 0, "enrollment_groups": 0}

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        for table in reads:
            if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
                reads[table] += 1

    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        run_to_acks(consumer(ctx, bus), tracker, ctx, [scan() for _ in range(UNITS)], UNITS)
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)
    assert state_of(world, tracker.acked[0]) is UnitState.CONFIG_ISSUED
    # Two handler threads, one batch each.
    assert 1 <= reads["stations"] <= 2, reads
    assert 1 <= reads["enrollment_groups"] <= 2, reads


def test_identity_conflicts_are_found_in_batches_without_a_query_per_scan(world: World, bus: PahoBus) -> None:
    """A batch's identities are locked and read once (per handler thread): a scan sharing a stored
    unit's MAC is quarantined, of two new units sharing a serial exactly one is, the rest are keyed."""
    ctx = world.line_ready("group")
    tracker = Tracker(world)
    stored = scan()
    run_to_acks(consumer(ctx, bus), tracker, ctx, [stored], 1)
    serial, mac = service_helpers.new_identity()
    _, other_mac = service_helpers.new_identity()
    clone = scan(service_helpers.new_identity()[0], stored.mac)
    twins = [scan(serial, mac), scan(serial, other_mac)]
    fresh = [scan() for _ in range(UNITS)]
    # A lone message is handled alone (no batch, no preparer): give each handler thread two or more.
    # The partition mirrors Consumer.on_message's; counter-made identities can fall mostly on one side.
    while min(sum(_thread_of(m) == i for m in [clone, *twins, *fresh]) for i in (0, 1)) < 2:
        fresh.append(scan())
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        run_to_acks(consumer(ctx, bus), tracker, ctx, [clone, *twins, *fresh], 1 + 3 + len(fresh))
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)
    assert state_of(world, clone.registration_id) is UnitState.QUARANTINED
    twin_states = sorted(str(state_of(world, t.registration_id)) for t in twins)
    assert twin_states == sorted([str(UnitState.QUARANTINED), str(UnitState.CONFIG_ISSUED)])
    assert all(state_of(world, m.registration_id) is UnitState.CONFIG_ISSUED for m in fresh)
    one_by_one = [s for s in statements if "WHERE units.mac = " in s]
    batched = [s for s in statements if "units.mac IN " in s]
    assert one_by_one == [] and 1 <= len(batched) <= 2, (one_by_one, batched)


def test_a_poison_message_in_a_batch_is_dead_lettered_and_the_rest_processed(
    world: World, bus: PahoBus, mosquitto: Mosquitto
) -> None:
    ctx = world.context("individual")
    deadletters = Collector()
    bus.subscribe(f"{ctx.topics.base}/deadletter/#", deadletters)
    tracker = Tracker(world)
    scans = [scan() for _ in range(UNITS)]
    poison = scans[UNITS // 2].registration_id

    def keyer_that_chokes(handler_ctx: Context, envelope: Envelope) -> None:
        if envelope.subject == poison:
            raise RuntimeError("bug triggered by this one message")
        HANDLERS[UnitScanned](handler_ctx, envelope)

    run_to_acks(consumer(ctx, bus, {UnitScanned: keyer_that_chokes}), tracker, ctx, scans, UNITS)
    assert state_of(world, poison) is None
    assert all(
        state_of(world, m.registration_id) is UnitState.KEYED for m in scans if m.registration_id != poison
    )
    assert totals(world)[:2] == (UNITS - 1, UNITS - 1)
    (dead,) = deadletters.wait_for(1)
    assert dead.topic.endswith("/deadletter/handler-error")


def test_a_crash_before_commit_loses_nothing_and_redelivery_processes_once(
    world: World, bus: PahoBus
) -> None:
    ctx = world.context("individual")
    tracker = Tracker(world)
    scans = [scan() for _ in range(UNITS)]
    crashed = threading.Event()

    def keyer_then_crash(handler_ctx: Context, envelope: Envelope) -> None:
        HANDLERS[UnitScanned](handler_ctx, envelope)
        if envelope.subject == scans[-1].registration_id:
            crashed.set()
            raise Crash  # the process dies after some handlers ran, before the batch commit

    dying = Consumer(ctx, bus, {UnitScanned: keyer_then_crash}, is_transient_db_error, batch_size=50)
    dying._queues.append(queue.Queue())  # one handler queue, drained by hand on this thread below
    for message in scans:
        dying.on_message(tracker.inbound(ctx, message))
    with pytest.raises(Crash):
        dying._drain(dying._queues[0])
    assert crashed.is_set() and tracker.acked == []
    assert totals(world) == (0, 0, 0)  # nothing committed

    # The broker redelivers every unacked message.
    run_to_acks(consumer(ctx, bus), tracker, ctx, scans, UNITS)
    assert totals(world)[:2] == (UNITS, UNITS)


def test_a_crash_between_commit_and_ack_makes_redelivery_a_no_op(world: World, bus: PahoBus) -> None:
    ctx = world.context("individual")
    tracker = Tracker(world)
    scans = [scan() for _ in range(UNITS)]
    first = consumer(ctx, bus)
    payloads = []
    for message in scans:
        inbound = tracker.inbound(ctx, message)
        payloads.append(inbound)
        first.on_message(inbound)
    first.start()
    try:
        tracker.wait_acks(UNITS)
    finally:
        first.stop()
    after_first = totals(world)
    # The acks "never reached the broker": it redelivers the very same messages (same event ids).
    tracker.acked.clear()
    second = consumer(ctx, bus)
    for inbound in payloads:
        second.on_message(InboundMessage(inbound.topic, inbound.payload, inbound.ack, redelivered=True))
    second.start()
    try:
        tracker.wait_acks(UNITS)
    finally:
        second.stop()
    assert totals(world) == after_first == (UNITS, UNITS, after_first[2])
    with world.db.uow() as uow:
        keyed = [i for i in uow.outbox.pending(1000) if UnitKeyed.NAME in i.topic]
    assert len(keyed) == UNITS


def test_a_handler_that_writes_without_committing_leaks_nothing_into_the_batch(
    world: World, bus: PahoBus
) -> None:
    ctx = world.context("individual")
    tracker = Tracker(world)
    scans = [scan() for _ in range(UNITS)]
    careless = scans[3].registration_id

    def keyer_or_forgetful(handler_ctx: Context, envelope: Envelope) -> None:
        if envelope.subject == careless:
            with handler_ctx.uow_factory() as uow:
                uow.outbox.add(f"leak-{envelope.id}", "t/leak", b"{}")
            return  # wrote, never committed: in a batch that must not be committed by the others
        HANDLERS[UnitScanned](handler_ctx, envelope)

    run_to_acks(consumer(ctx, bus, {UnitScanned: keyer_or_forgetful}), tracker, ctx, scans, UNITS)
    with world.db.uow() as uow:
        event_ids = [item.event_id for item in uow.outbox.pending(1000)]
    assert not [e for e in event_ids if e.startswith("leak-")]
    assert len(event_ids) == UNITS - 1 and state_of(world, careless) is None
