"""SqlUnitOfWork and the SQL repositories on real SQLite and PostgreSQL databases (schema by migrations)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from pipeline.db.session import Database
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState
from pipeline.service.unit_of_work import GroupRecord, StationRecord

T0 = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)


def make_unit(n: int = 1, **fields: object) -> Unit:
    mac = f"a1:b2:c3:d4:e5:{n:02x}"
    unit = Unit(
        registration_id=f"sn-{n:03d}-mac-{mac.replace(':', '-')}",
        serial=f"{n:03d}",
        mac=mac,
        line="line1",
        station="S1",
        mode=EnrollmentMode.GROUP,
    )
    for name, value in fields.items():
        setattr(unit, name, value)
    unit.transition(UnitState.SCANNED, T0)
    return unit


def add(db: Database, *units: Unit) -> None:
    with db.uow() as uow:
        for unit in units:
            uow.units.add(unit)
        uow.commit()


def test_unit_round_trip_all_fields_tz_aware(database: Database) -> None:
    plus2 = timezone(timedelta(hours=2))
    unit = make_unit(
        port="/dev/ttyUSB0",
        product="gw",
        batch="B7",
        group_id="edgeline-gw",
        device_id="dev-1",
        assigned_hub="hub1.azure-devices.net",
        config_sha256="ab" * 32,
        attempts=2,
        rework_count=1,
        checks=3,
        next_check_at=T0.astimezone(plus2) + timedelta(minutes=5),
    )
    for i, state in enumerate((UnitState.KEYED, UnitState.ENROLLED, UnitState.CONFIG_ISSUED)):
        unit.transition(state, T0 + timedelta(seconds=i + 1))
    unit.fail(Failure(stage="flash", reason="serial timeout", retryable=True), T0 + timedelta(seconds=9))
    add(database, unit)
    with database.uow() as uow:
        loaded = uow.units.get(unit.registration_id)
    assert loaded == unit
    assert loaded is not None and loaded.next_check_at is not None
    assert loaded.next_check_at.tzinfo is not None and loaded.next_check_at.utcoffset() == timedelta(0)
    assert all(t.tzinfo is not None for t in loaded.stage_times.values())
    assert loaded.failure == Failure("flash", "serial timeout", True)


def test_save_updates_and_clears_failure(database: Database) -> None:
    unit = make_unit()
    unit.fail(Failure("key", "boom", False), T0)
    add(database, unit)
    with database.uow() as uow:
        got = uow.units.get(unit.registration_id, for_update=True)
        assert got is not None
        got.transition(UnitState.SCANNED, T0 + timedelta(seconds=1))
        uow.units.save(got)
        uow.commit()
    with database.uow() as uow:
        again = uow.units.get(unit.registration_id)
    assert again is not None and again.failure is None and again.state is UnitState.SCANNED


def test_for_update_serialises_writers(database: Database) -> None:
    unit = make_unit()
    add(database, unit)
    order: list[str] = []
    locked = threading.Event()

    def second() -> None:
        locked.wait()
        with database.uow() as uow:
            got = uow.units.get(unit.registration_id, for_update=True)
            order.append("second-got")
            assert got is not None and got.checks == 1
            got.checks += 1
            uow.units.save(got)
            uow.commit()

    worker = threading.Thread(target=second)
    worker.start()
    with database.uow() as uow:
        first = uow.units.get(unit.registration_id, for_update=True)
        assert first is not None
        locked.set()
        time.sleep(0.5)
        first.checks += 1
        uow.units.save(first)
        order.append("first-commit")
        uow.commit()
    worker.join(10)
    assert order == ["first-commit", "second-got"]
    with database.uow() as uow:
        final = uow.units.get(unit.registration_id)
    assert final is not None and final.checks == 2


def test_identity_conflict_prefers_a_mac_match_and_sees_units_not_yet_flushed(database: Database) -> None:
    stored = make_unit(1)
    add(database, stored)
    same_serial = make_unit(2, serial=stored.serial)  # a stored serial, a new MAC
    with database.uow() as uow:
        assert uow.units.find_identity_conflict("999", "a1:b2:c3:d4:e5:99") is None
        assert uow.units.find_identity_conflict(stored.serial, "A1-B2-C3-D4-E5-99") == stored
        uow.units.add(same_serial)  # pending in this transaction: the query alone would not find it
        found = uow.units.find_identity_conflict("999", same_serial.mac)
        assert found is not None and found.registration_id == same_serial.registration_id
        # Both kinds of match exist: the unit sharing the MAC is named, as find_by_mac did before.
        found = uow.units.find_identity_conflict(stored.serial, same_serial.mac)
        assert found is not None and found.registration_id == same_serial.registration_id
        found = uow.units.find_identity_conflict(stored.serial, stored.mac)
        assert found == stored


def test_identities_locked_for_a_batch_are_answered_without_a_query(database: Database) -> None:
    """`lock_identities` locks and reads a batch's serials and MACs in one go; the conflict check of each
    then gives the same answers as the one-by-one check, with no statement of its own (a unit the
    transaction adds and flushes later is still found)."""
    stored = make_unit(1)
    add(database, stored)
    fresh, twin = make_unit(2), make_unit(3, mac=make_unit(2).mac)  # a new MAC, and a unit sharing it
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with database.uow() as uow:
        uow.units.lock_identities(
            [(stored.serial, "A1-B2-C3-D4-E5-99"), (fresh.serial, fresh.mac), (twin.serial, twin.mac)]
        )
        event.listen(database.engine, "before_cursor_execute", count)
        try:
            assert uow.units.find_identity_conflict(stored.serial, "A1-B2-C3-D4-E5-99") == stored
            assert uow.units.find_identity_conflict(fresh.serial, fresh.mac) is None
            assert statements == []
            uow.units.add(fresh)
            uow.units.count_by_state()  # a query: flushes the new unit
            found = uow.units.find_identity_conflict(twin.serial, twin.mac)
            assert found is not None and found.registration_id == fresh.registration_id
            assert len(statements) == 2, statements  # the flush's INSERT and the count, nothing else
            uow.units.find_identity_conflict("777", "a1:b2:c3:d4:e5:77")  # not locked before: queried
            assert len(statements) > 2
        finally:
            event.remove(database.engine, "before_cursor_execute", count)


def test_lookups_stuck_due_and_counts(database: Database) -> None:
    a, b, c = make_unit(1), make_unit(2), make_unit(3)
    b.updated_at = T0 + timedelta(minutes=10)
    c.transition(UnitState.KEYED, T0)
    c.transition(UnitState.ENROLLED, T0)
    c.transition(UnitState.CONFIG_ISSUED, T0)
    c.transition(UnitState.FLASHED, T0)
    c.next_check_at = T0 + timedelta(seconds=30)
    add(database, a, b, c)
    with database.uow() as uow:
        assert uow.units.find_by_mac("A1-B2-C3-D4-E5-02") == b
        assert uow.units.find_by_serial("003") == c
        assert uow.units.find_by_serial("nope") is None
        stuck = uow.units.stuck((UnitState.SCANNED,), T0 + timedelta(minutes=1), 10)
        assert [u.registration_id for u in stuck] == [a.registration_id]
        assert uow.units.due_for_check(T0, 10) == []
        assert uow.units.due_for_check(T0 + timedelta(minutes=1), 10) == [c]
        assert uow.units.count_by_state() == {"scanned": 2, "flashed": 1}


def test_outbox_pending_in_id_order_and_mark_published(database: Database) -> None:
    with database.uow() as uow:
        for i in range(5):
            uow.outbox.add(f"evt-{i}", f"edgeline/v1/units/events/{i}", f"p{i}".encode())
        uow.commit()
    with database.uow() as uow:
        items = uow.outbox.pending(10)
        assert [i.event_id for i in items] == [f"evt-{i}" for i in range(5)]
        assert items[0].payload == b"p0"
        uow.outbox.mark_published([items[0].id, items[2].id], T0)
        uow.commit()
    with database.uow() as uow:
        assert [i.event_id for i in uow.outbox.pending(2)] == ["evt-1", "evt-3"]


def test_processed_messages_dedupe(database: Database) -> None:
    with database.uow() as uow:
        assert not uow.processed.seen("e1", "keyer")
        uow.processed.record("e1", "keyer", T0)
        uow.commit()
    with database.uow() as uow:
        assert uow.processed.seen("e1", "keyer")
        assert not uow.processed.seen("e1", "enroller")
        with pytest.raises(IntegrityError):  # at the latest on commit (writes are flushed together)
            uow.processed.record("e1", "keyer", T0)
            uow.commit()


def test_rollback_on_exception_leaves_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError), database.uow() as uow:
        uow.units.add(make_unit())
        uow.outbox.add("evt", "t", b"x")
        uow.processed.record("evt", "h", T0)
        uow.audit.append(at=T0, kind="scanned", actor="test", registration_id=None, detail={})
        raise RuntimeError("handler crashed")
    with database.uow() as uow:
        assert uow.units.count_by_state() == {}
        assert uow.outbox.pending(10) == []
        assert not uow.processed.seen("evt", "h")
    with database.uow() as uow:  # leaving without commit also discards
        uow.units.add(make_unit())
    with database.uow() as uow:
        assert uow.units.count_by_state() == {}


def test_keys_groups_stations_put_get_replace(database: Database) -> None:
    with database.uow() as uow:
        uow.keys.put("r1", b"sealed-1")
        uow.groups.put(GroupRecord("g1", "gw", b"p1", b"s1", T0))
        uow.stations.put(StationRecord("S1", "line1", bytes(32), T0))
        uow.commit()
    with database.uow() as uow:
        uow.keys.put("r1", b"sealed-2")
        uow.groups.put(GroupRecord("g1", "gw", b"p2", b"s2", T0))
        uow.stations.put(StationRecord("S1", "line2", b"\x01" * 32, T0))
        uow.commit()
    with database.uow() as uow:
        assert uow.keys.get("r1") == b"sealed-2" and uow.keys.get("r2") is None
        assert uow.groups.get("g1") == GroupRecord("g1", "gw", b"p2", b"s2", T0)
        assert uow.stations.list() == [StationRecord("S1", "line2", b"\x01" * 32, T0)]
        with pytest.raises(ValueError, match="32 raw bytes"):
            uow.stations.put(StationRecord("S2", "line1", b"short", T0))


def test_a_record_read_in_a_transaction_is_read_again_after_a_put_or_a_new_transaction(
    database: Database,
) -> None:
    """Group and station records are read once per transaction; a write (here, or committed by another
    transaction) is seen by the next read that may see it."""
    with database.uow() as uow:
        assert uow.stations.get("S1") is None and uow.groups.get("g1") is None
        uow.stations.put(StationRecord("S1", "line1", bytes(32), T0))
        assert uow.groups.add_if_absent(GroupRecord("g1", "gw", b"p1", b"s1", T0))
        assert uow.stations.get("S1") == StationRecord("S1", "line1", bytes(32), T0)
        assert uow.groups.get("g1") == GroupRecord("g1", "gw", b"p1", b"s1", T0)
        uow.groups.put(GroupRecord("g1", "gw", b"p2", b"s2", T0))
        assert uow.groups.get("g1") == GroupRecord("g1", "gw", b"p2", b"s2", T0)
        uow.commit()
        with database.uow() as other:
            other.stations.put(StationRecord("S1", "line1", b"\x02" * 32, T0))
            other.commit()
        assert uow.stations.get("S1") == StationRecord("S1", "line1", b"\x02" * 32, T0)


def test_naive_datetime_refused(database: Database) -> None:
    with database.uow() as uow, pytest.raises(Exception, match="naive datetime"):
        uow.processed.record("e", "h", datetime(2026, 1, 1))
        uow.commit()  # writes are flushed together, at the latest here
