"""SQL repositories of the line's reference records: sealed device keys, enrollment groups, stations.

Responsible for: reading and writing those rows inside the caller's session. Group and station records
are read once per transaction: every unit of a batch asks for the same station and group, and the
session's identity map keeps no row nobody holds (SQLAlchemy keeps clean rows weakly), so each ask was
a query.
Not responsible for: committing (SqlUnitOfWork) or sealing keys (callers hand over sealed bytes only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from pipeline.db import tables as t
from pipeline.db.repositories import wrote
from pipeline.service import unit_of_work as ports

V = TypeVar("V")


def _now() -> datetime:
    return datetime.now(UTC)


class _ReadOncePerTransaction(Generic[V]):
    """A repository whose records are read once per transaction: `_load` runs once per key until a write
    drops it (`_forget_one`) or the transaction ends (`forget`)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._answers: dict[str, V | None] = {}

    def forget(self) -> None:
        """Drop what this transaction read (the next one reads the rows again)."""
        self._answers.clear()

    def _read(self, key: str) -> V | None:
        if key not in self._answers:
            with self._session.no_autoflush:  # these rows never depend on a handler's pending writes
                self._answers[key] = self._load(key)
        return self._answers[key]

    def _forget_one(self, key: str) -> None:
        self._answers.pop(key, None)

    def _load(self, key: str) -> V | None:
        raise NotImplementedError


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
        wrote(self._session)
        self._session.flush()

    def page(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        query = select(t.DeviceKeyRow.registration_id, t.DeviceKeyRow.sealed_key)
        if after is not None:
            query = query.where(t.DeviceKeyRow.registration_id > after)
        rows = self._session.execute(query.order_by(t.DeviceKeyRow.registration_id).limit(limit))
        return [(rid, bytes(blob)) for rid, blob in rows.tuples()]


class SqlGroupRepository(_ReadOncePerTransaction[ports.GroupRecord], ports.GroupRepository):
    """Enrollment groups with sealed keys; put() inserts or replaces (key rotation)."""

    def get(self, group_id: str) -> ports.GroupRecord | None:
        return self._read(group_id)

    def _load(self, key: str) -> ports.GroupRecord | None:
        row = self._session.get(t.EnrollmentGroupRow, key)
        return None if row is None else _group(row)

    def put(self, record: ports.GroupRecord) -> None:
        self._forget_one(record.group_id)
        row = self._session.get(t.EnrollmentGroupRow, record.group_id)
        if row is None:
            row = t.EnrollmentGroupRow(group_id=record.group_id, created_at=record.created_at)
            self._session.add(row)
        row.product = record.product
        row.sealed_primary_key = record.sealed_primary_key
        row.sealed_secondary_key = record.sealed_secondary_key
        row.updated_at = _now()
        wrote(self._session)
        self._session.flush()

    def add_if_absent(self, record: ports.GroupRecord) -> bool:
        values = {
            "group_id": record.group_id,
            "product": record.product,
            "sealed_primary_key": record.sealed_primary_key,
            "sealed_secondary_key": record.sealed_secondary_key,
            "created_at": record.created_at,
            "updated_at": _now(),
        }
        dialect = self._session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(t.EnrollmentGroupRow).values(**values)
        # ON CONFLICT waits for a concurrent insert of the same group to commit, then adds nothing.
        statement = statement.on_conflict_do_nothing(index_elements=["group_id"])
        added = self._session.scalar(statement.returning(t.EnrollmentGroupRow.group_id)) is not None
        self._forget_one(record.group_id)
        wrote(self._session)
        return added

    def list(self) -> list[ports.GroupRecord]:
        rows = self._session.scalars(select(t.EnrollmentGroupRow).order_by(t.EnrollmentGroupRow.group_id))
        return [_group(r) for r in rows]


class SqlStationRepository(_ReadOncePerTransaction[ports.StationRecord], ports.StationRepository):
    """Registered stations and their public keys."""

    def get(self, name: str) -> ports.StationRecord | None:
        return self._read(name)

    def _load(self, key: str) -> ports.StationRecord | None:
        row = self._session.get(t.StationRow, key)
        return _station(row) if row else None

    def put(self, record: ports.StationRecord) -> None:
        if len(record.public_key) != 32:
            raise ValueError(
                f"station {record.name}: public key must be 32 raw bytes, got {len(record.public_key)}"
            )
        self._forget_one(record.name)
        row = self._session.get(t.StationRow, record.name)
        if row is None:
            row = t.StationRow(name=record.name, created_at=record.created_at)
            self._session.add(row)
        row.line = record.line
        row.public_key = record.public_key
        wrote(self._session)
        self._session.flush()

    def list(self) -> list[ports.StationRecord]:
        return [_station(r) for r in self._session.scalars(select(t.StationRow).order_by(t.StationRow.name))]


def _station(row: t.StationRow) -> ports.StationRecord:
    return ports.StationRecord(row.name, row.line, row.public_key, row.created_at)


def _group(row: t.EnrollmentGroupRow) -> ports.GroupRecord:
    return ports.GroupRecord(
        row.group_id, row.product, row.sealed_primary_key, row.sealed_secondary_key, row.created_at
    )
