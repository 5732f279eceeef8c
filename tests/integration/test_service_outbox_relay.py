"""OutboxRelay claiming: several relays on one PostgreSQL database publish every row exactly once.

Real pieces only: a migrated database (both backends, `db_url`), a private Mosquitto (`mosquitto`), one
PahoBus and one Database per relay (as separate `edgeline up` processes would have), and a subscriber
that counts event ids. SQLite runs one relay per database (its claim cannot be held, see
SqlOutbox.claim_pending), so there it is checked that one relay still publishes everything.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from conftest import empty_pg

from pipeline.bus.cloudevents import decode, encode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.db.session import Database
from pipeline.db.transient import is_transient_db_error
from pipeline.domain.events import UnitKeyed
from pipeline.service.outbox_relay import OutboxRelay

if TYPE_CHECKING:
    from conftest import Mosquitto

pytestmark = pytest.mark.mosquitto

ROWS = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventCounter:
    """Counts the event ids it receives (and acks each message)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self._cond = threading.Condition()

    def __call__(self, message: InboundMessage) -> None:
        event_id = decode(message.payload).id
        message.ack()
        with self._cond:
            self.ids[event_id] += 1
            self._cond.notify_all()

    def wait_for(self, total: int, timeout: float = 30.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: sum(self.ids.values()) >= total, timeout), (
                f"received {sum(self.ids.values())} of {total} messages"
            )


def connect(url: str) -> PahoBus:
    bus = PahoBus.from_url(
        url, f"test-{uuid.uuid4().hex[:10]}", clean_session=True, shared_subscriptions=False
    )
    bus.connect(timeout=5)
    return bus


def fill_outbox(db: Database, topic: str, rows: int) -> set[str]:
    """Commit `rows` UnitKeyed events to the outbox; return their event ids."""
    ids = set()
    with db.uow() as uow:
        for i in range(rows):
            event_id, payload = encode(
                UnitKeyed(registration_id=f"sn-{i}-mac-00", mode="group"), source="edgeline/test"
            )
            uow.outbox.add(event_id, topic, payload)
            ids.add(event_id)
        uow.commit()
    return ids


@pytest.fixture
def subscriber(mosquitto: Mosquitto, topic_root: str) -> Iterator[tuple[EventCounter, str]]:
    """A subscriber counting event ids on `<topic_root>/relay`, and that topic."""
    counter, topic = EventCounter(), f"{topic_root}/relay"
    bus = connect(mosquitto.url)
    bus.subscribe(topic, counter)
    yield counter, topic
    bus.close()


def run_relays(db_url: str, broker_url: str, relays: int) -> list[int]:
    """Run `relays` relays (own Database and bus each) until the outbox is empty; rows each published."""
    dbs = [Database(db_url) for _ in range(relays)]
    buses = [connect(broker_url) for _ in range(relays)]
    published = [0] * relays
    start = threading.Barrier(relays)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        relay = OutboxRelay(dbs[index].uow, buses[index], utcnow, is_transient_db_error, batch=25)
        start.wait()
        try:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 0.5:  # the other relay may still hold a claim
                count = relay.run_once()
                published[index] += count
                if count:
                    idle_since = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(relays)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for bus in buses:
        bus.close()
    for db in dbs:
        db.dispose()
    assert not errors, errors
    return published


def assert_all_published_once(
    database: Database, counter: EventCounter, expected: set[str], published: list[int]
) -> None:
    counter.wait_for(len(expected))
    time.sleep(0.3)  # a duplicate would arrive right behind the originals
    duplicates = {event_id: n for event_id, n in counter.ids.items() if n > 1}
    assert duplicates == {}
    assert set(counter.ids) == expected
    assert sum(published) == len(expected)
    with database.uow() as uow:
        assert uow.outbox.pending(ROWS) == []


@pytest.fixture
def pg_database(pg_migrated_url: str) -> Iterator[Database]:
    """PostgreSQL only: several relays on one database means PostgreSQL (SQLite means one process)."""
    empty_pg(pg_migrated_url)
    db = Database(pg_migrated_url)
    yield db
    db.dispose()


@pytest.mark.postgres
def test_two_relays_publish_every_row_exactly_once(
    pg_database: Database, mosquitto: Mosquitto, subscriber: tuple[EventCounter, str]
) -> None:
    database = pg_database
    counter, topic = subscriber
    expected = fill_outbox(database, topic, ROWS)

    published = run_relays(database.url, mosquitto.url, relays=2)

    assert_all_published_once(database, counter, expected, published)
    assert all(published), f"both relays should have taken part: {published}"


def test_one_relay_publishes_every_row(
    database: Database, mosquitto: Mosquitto, subscriber: tuple[EventCounter, str]
) -> None:
    counter, topic = subscriber
    expected = fill_outbox(database, topic, ROWS)

    published = run_relays(database.url, mosquitto.url, relays=1)

    assert_all_published_once(database, counter, expected, published)


def test_a_claim_hides_rows_from_other_relays_or_ends_at_once(database: Database) -> None:
    """PostgreSQL: claimed rows stay locked until commit. SQLite: the claim leaves no transaction open."""
    fill_outbox(database, "t/claims", 4)
    with database.uow() as first:
        claimed = first.outbox.claim_pending(2)
        with database.uow() as second:  # on SQLite this would wait 30 s if the claim held the lock
            others = second.outbox.claim_pending(10)
            second.outbox.mark_published([item.id for item in others], utcnow())
            second.commit()
        first.outbox.mark_published([item.id for item in claimed], utcnow())
        first.commit()
    claimed_ids = {item.event_id for item in claimed}
    other_ids = {item.event_id for item in others}
    if database.engine.dialect.name == "postgresql":
        assert len(claimed_ids) == 2 and len(other_ids) == 2 and not claimed_ids & other_ids
    else:
        assert claimed_ids <= other_ids and len(other_ids) == 4
    with database.uow() as uow:
        assert uow.outbox.pending(10) == []


def test_claim_must_open_its_unit_of_work(database: Database) -> None:
    with database.uow() as uow:
        uow.outbox.pending(1)
        with pytest.raises(RuntimeError, match="first call"):
            uow.outbox.claim_pending(1)


@pytest.mark.postgres
def test_a_row_committed_below_the_floor_is_published_by_the_next_full_scan(
    pg_database: Database, mosquitto: Mosquitto, subscriber: tuple[EventCounter, str]
) -> None:
    """A transaction that took a low id but committed after a later one is not skipped for good."""
    counter, topic = subscriber
    bus = connect(mosquitto.url)
    relay = OutboxRelay(pg_database.uow, bus, utcnow, is_transient_db_error, full_scan_every=3600)
    try:
        with pg_database.uow() as slow:
            slow.outbox.add("late", topic, encode(UnitKeyed(registration_id="sn-1-mac-01", mode="group"),
                                                  source="edgeline/test", event_id="late")[1])  # fmt: skip
            slow.outbox.flush_deferred()  # its id is taken now, its commit comes later
            early = fill_outbox(pg_database, topic, 3)
            assert relay.run_once() == 3  # the floor is now above the uncommitted row
            slow.commit()
        assert relay.run_once() == 0  # above the floor: nothing
        assert relay.run_once() == 1  # the full scan that follows an empty claim finds it
        counter.wait_for(4)
        assert set(counter.ids) == {*early, "late"}
    finally:
        bus.close()
