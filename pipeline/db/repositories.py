"""SQL implementations of the repository ports of pipeline.service.unit_of_work (except the audit log).

Responsible for: queries and row locking for units, sealed keys, groups, stations, the outbox and
processed-message records, all inside the caller's session (one transaction per unit of work).
Not responsible for: committing (SqlUnitOfWork), the audit chain (pipeline.db.audit_chain), or
sealing keys (callers hand over sealed bytes only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from pipeline.db import tables as t
from pipeline.db.unit_mapping import copy_to_row, new_row, unit_from_row
from pipeline.domain.model import Unit, UnitState
from pipeline.service import unit_of_work as ports


def _now() -> datetime:
    return datetime.now(UTC)


def _wrote(session: Session) -> None:
    """Count a write in this transaction (a batch member must not leave one uncommitted)."""
    session.info["writes"] = session.info.get("writes", 0) + 1


def writes(session: Session) -> int:
    """How many repository writes this session's transactions made so far."""
    return int(session.info.get("writes", 0))


class SqlUnitRepository(ports.UnitRepository):
    """Units, keyed by registration ID; `for_update` takes a row lock on PostgreSQL."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._loaded: dict[str, t.UnitRow] = {}  # rows this session read, so save() need not re-read
        # Registration IDs whose row this transaction holds locked (or created, or knows absent): their
        # state in the session is authoritative until commit, so get() needs no query (batches).
        self._locked: set[str] = set()

    def forget(self) -> None:
        """Drop what this transaction knew (its locks end with commit or rollback)."""
        self._loaded.clear()
        self._locked.clear()

    def lock_many(self, registration_ids: list[str]) -> None:
        wanted = sorted(set(registration_ids) - self._locked)
        if not wanted:
            return
        query = (
            select(t.UnitRow)
            .where(t.UnitRow.registration_id.in_(wanted))
            .order_by(t.UnitRow.id)  # one lock order for every transaction: no deadlock between them
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for row in self._session.scalars(query):
            self._loaded[row.registration_id] = row
        self._locked.update(wanted)

    def _row(self, registration_id: str, *, for_update: bool = False) -> t.UnitRow | None:
        if registration_id in self._locked:
            return self._loaded.get(registration_id)
        query = select(t.UnitRow).where(t.UnitRow.registration_id == registration_id)
        if for_update:  # SQLite: dropped by the dialect; BEGIN IMMEDIATE already serialises writers
            query = query.with_for_update()
        row = self._session.scalars(query.execution_options(populate_existing=True)).one_or_none()
        if row is not None:
            self._loaded[registration_id] = row
            if for_update:
                self._locked.add(registration_id)
        return row

    def get(self, registration_id: str, *, for_update: bool = False) -> Unit | None:
        row = self._row(registration_id, for_update=for_update)
        return unit_from_row(row) if row else None

    def find_by_mac(self, mac: str) -> Unit | None:
        return self._latest(t.UnitRow.mac == mac.strip().lower().replace("-", ":"))

    def find_by_serial(self, serial: str) -> Unit | None:
        return self._latest(t.UnitRow.serial == serial)

    def _latest(self, condition: object) -> Unit | None:
        query = select(t.UnitRow).where(condition).order_by(t.UnitRow.updated_at.desc()).limit(1)  # type: ignore[arg-type]
        row = self._session.scalars(query).first()
        return unit_from_row(row) if row else None

    def add(self, unit: Unit) -> None:
        # No flush: the next query autoflushes, the commit sends a whole batch's rows together.
        row = new_row(unit, _now())
        self._session.add(row)
        self._loaded[unit.registration_id] = row
        self._locked.add(unit.registration_id)  # ours: others see it only after our commit
        _wrote(self._session)

    def save(self, unit: Unit) -> None:
        row = self._loaded.get(unit.registration_id)
        if row is None or row not in self._session:  # not read in this session (or expunged)
            row = self._row(unit.registration_id)
        if row is None:
            raise LookupError(f"unit {unit.registration_id} was never added; add() it first")
        copy_to_row(unit, row, _now())
        _wrote(self._session)

    def stuck(self, states: tuple[UnitState, ...], updated_before: datetime, limit: int) -> list[Unit]:
        query = (
            select(t.UnitRow)
            .where(t.UnitRow.state.in_([s.value for s in states]), t.UnitRow.updated_at < updated_before)
            .order_by(t.UnitRow.updated_at, t.UnitRow.id)
            .limit(limit)
        )
        return [unit_from_row(r) for r in self._session.scalars(query)]

    def due_for_check(self, now: datetime, limit: int) -> list[Unit]:
        query = (
            select(t.UnitRow)
            .where(t.UnitRow.state == UnitState.FLASHED.value, t.UnitRow.next_check_at <= now)
            .order_by(t.UnitRow.next_check_at, t.UnitRow.id)
            .limit(limit)
        )
        return [unit_from_row(r) for r in self._session.scalars(query)]

    def count_by_state(self) -> dict[str, int]:
        query = select(t.UnitRow.state, func.count()).group_by(t.UnitRow.state)
        return {state: count for state, count in self._session.execute(query).tuples()}


class SqlKeyRepository(ports.KeyRepository):
    """Sealed individual device keys; put() replaces an existing key for the same unit."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, registration_id: str) -> bytes | None:
        row = self._session.get(t.DeviceKeyRow, registration_id)
        return row.sealed_key if row else None

    def put(self, registration_id: str, sealed_key: bytes) -> None:
        row = self._session.get(t.DeviceKeyRow, registration_id)
        if row is None:
            self._session.add(
                t.DeviceKeyRow(registration_id=registration_id, sealed_key=sealed_key, created_at=_now())
            )
        else:
            row.sealed_key = sealed_key
        _wrote(self._session)
        self._session.flush()


class SqlGroupRepository(ports.GroupRepository):
    """Enrollment groups with sealed keys; put() inserts or replaces (key rotation)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, group_id: str) -> ports.GroupRecord | None:
        with self._session.no_autoflush:  # group rows never depend on a handler's pending writes
            row = self._session.get(t.EnrollmentGroupRow, group_id)
        if row is None:
            return None
        return ports.GroupRecord(
            row.group_id, row.product, row.sealed_primary_key, row.sealed_secondary_key, row.created_at
        )

    def put(self, record: ports.GroupRecord) -> None:
        row = self._session.get(t.EnrollmentGroupRow, record.group_id)
        if row is None:
            row = t.EnrollmentGroupRow(group_id=record.group_id, created_at=record.created_at)
            self._session.add(row)
        row.product = record.product
        row.sealed_primary_key = record.sealed_primary_key
        row.sealed_secondary_key = record.sealed_secondary_key
        row.updated_at = _now()
        _wrote(self._session)
        self._session.flush()


class SqlStationRepository(ports.StationRepository):
    """Registered stations and their public keys."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str) -> ports.StationRecord | None:
        with self._session.no_autoflush:  # station rows never depend on a handler's pending writes
            row = self._session.get(t.StationRow, name)
        return _station(row) if row else None

    def put(self, record: ports.StationRecord) -> None:
        if len(record.public_key) != 32:
            raise ValueError(
                f"station {record.name}: public key must be 32 raw bytes, got {len(record.public_key)}"
            )
        row = self._session.get(t.StationRow, record.name)
        if row is None:
            row = t.StationRow(name=record.name, created_at=record.created_at)
            self._session.add(row)
        row.line = record.line
        row.public_key = record.public_key
        _wrote(self._session)
        self._session.flush()

    def list(self) -> list[ports.StationRecord]:
        return [_station(r) for r in self._session.scalars(select(t.StationRow).order_by(t.StationRow.name))]


def _station(row: t.StationRow) -> ports.StationRecord:
    return ports.StationRecord(row.name, row.line, row.public_key, row.created_at)


class SqlOutbox(ports.Outbox):
    """Messages committed with state changes, published later by the relay in id order.

    `add` only collects rows; they are inserted together by `flush_deferred` (SqlUnitOfWork.commit),
    or before this adapter's own queries, so a batch of handlers costs one INSERT.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._deferred: list[dict[str, Any]] = []

    def add(self, event_id: str, topic: str, payload: bytes) -> None:
        row = {"event_id": event_id, "topic": topic, "payload": payload, "created_at": _now()}
        self._deferred.append(row)
        _wrote(self._session)

    def flush_deferred(self) -> None:
        """Insert the rows added in this transaction, all in one statement (called before commit)."""
        if self._deferred:
            rows, self._deferred = self._deferred, []
            self._session.execute(insert(t.OutboxRow), rows)

    def forget(self) -> None:
        """Drop rows never sent (the transaction is rolled back)."""
        self._deferred = []

    def pending(self, limit: int, *, min_id: int = 0) -> list[ports.OutboxItem]:
        self.flush_deferred()
        query = (
            select(t.OutboxRow)
            .where(t.OutboxRow.published_at.is_(None), t.OutboxRow.id >= min_id)
            .order_by(t.OutboxRow.id)
            .limit(limit)
        )
        # Several relays may run: each takes rows the others have not locked (PostgreSQL; no-op on SQLite).
        query = query.with_for_update(skip_locked=True)
        return [ports.OutboxItem(r.id, r.event_id, r.topic, r.payload) for r in self._session.scalars(query)]

    def claim_pending(self, limit: int, *, min_id: int = 0) -> list[ports.OutboxItem]:
        """Lock a batch until commit (PostgreSQL) or read it in a transaction ended at once (SQLite).

        PostgreSQL: the FOR UPDATE SKIP LOCKED locks stay while the relay publishes, so another
        relay never reads the same rows; row locks block no other writer, so holding them is cheap.
        SQLite: every transaction is BEGIN IMMEDIATE (pipeline.db.engine), i.e. holds the one write
        lock of the whole file; keeping it across a broker round trip would stall the line, and a
        SQLite deployment runs one relay anyway. The caller's `mark_published` then starts a new
        short transaction in the same session.
        """
        if self._session.in_transaction():
            raise RuntimeError("claim_pending must be the first call of its unit of work")
        items = self.pending(limit, min_id=min_id)
        if self._session.get_bind().dialect.name == "sqlite":
            self._session.rollback()  # read-only so far: ends the transaction and its write lock
        return items

    def mark_published(self, ids: list[int], at: datetime) -> None:
        if ids:
            statement = update(t.OutboxRow).where(t.OutboxRow.id.in_(ids)).values(published_at=at)
            self._session.execute(statement.execution_options(synchronize_session=False))
            _wrote(self._session)

    def prune_published(self, published_before: datetime, limit: int) -> int:
        oldest = (
            select(t.OutboxRow.id)
            .where(t.OutboxRow.published_at < published_before)  # NULL (unpublished) never matches
            .order_by(t.OutboxRow.published_at)
            .limit(limit)
        )
        statement = delete(t.OutboxRow).where(t.OutboxRow.id.in_(oldest.scalar_subquery()))
        result = self._session.execute(statement.execution_options(synchronize_session=False))
        _wrote(self._session)
        return int(getattr(result, "rowcount", 0) or 0)


class SqlProcessedMessages(ports.ProcessedMessages):
    """(event id, handler) pairs already handled; a concurrent duplicate fails the second commit."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._checked: set[str] = set()  # event ids whose every record is in `_known`
        self._known: set[tuple[str, str]] = set()
        self._deferred: list[dict[str, Any]] = []

    def forget(self) -> None:
        """Drop what this transaction knew, and records never sent."""
        self._checked.clear()
        self._known.clear()
        self._deferred = []

    def preload(self, event_ids: list[str]) -> None:
        wanted = sorted(set(event_ids) - self._checked)
        if not wanted:
            return
        row = t.ProcessedMessageRow
        query = select(row.event_id, row.handler).where(row.event_id.in_(wanted))
        self._known.update((str(e), str(h)) for e, h in self._session.execute(query))
        self._checked.update(wanted)

    def seen(self, event_id: str, handler: str) -> bool:
        if event_id in self._checked or (event_id, handler) in self._known:
            return (event_id, handler) in self._known
        return self._session.get(t.ProcessedMessageRow, (event_id, handler)) is not None

    def record(self, event_id: str, handler: str, at: datetime) -> None:
        if at.tzinfo is None:  # checked here: the INSERT runs only at commit
            raise ValueError(f"naive datetime {at.isoformat()} refused: pass a timezone-aware time")
        self._deferred.append({"event_id": event_id, "handler": handler, "processed_at": at})
        self._known.add((event_id, handler))  # a duplicate later in the same batch is then a no-op
        _wrote(self._session)

    def flush_deferred(self) -> None:
        """Insert the records of this transaction in one statement (called before commit)."""
        if self._deferred:
            rows, self._deferred = self._deferred, []
            self._session.execute(insert(t.ProcessedMessageRow), rows)

    def prune(self, processed_before: datetime, limit: int) -> int:
        row = t.ProcessedMessageRow
        oldest = (
            select(row.event_id, row.handler)
            .where(row.processed_at < processed_before)
            .order_by(row.processed_at)
            .limit(limit)
        )
        statement = delete(row).where(tuple_(row.event_id, row.handler).in_(oldest))
        result = self._session.execute(statement.execution_options(synchronize_session=False))
        _wrote(self._session)
        return int(getattr(result, "rowcount", 0) or 0)
