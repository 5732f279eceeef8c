"""SQL implementations of the delivery ports: the outbox and the processed-message records.

Responsible for: collecting a transaction's outbox rows and processed ids and inserting each kind with one
statement before commit, the relay's claims, and pruning delivered rows (retention).
Not responsible for: committing (SqlUnitOfWork) or publishing (pipeline.service.outbox_relay).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from pipeline.db import tables as t
from pipeline.db.repositories import wrote
from pipeline.service import unit_of_work as ports


def _now() -> datetime:
    return datetime.now(UTC)


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
        wrote(self._session)

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
            wrote(self._session)

    def prune_published(self, published_before: datetime, limit: int) -> int:
        oldest = (
            select(t.OutboxRow.id)
            .where(t.OutboxRow.published_at < published_before)  # NULL (unpublished) never matches
            .order_by(t.OutboxRow.published_at)
            .limit(limit)
        )
        statement = delete(t.OutboxRow).where(t.OutboxRow.id.in_(oldest.scalar_subquery()))
        result = self._session.execute(statement.execution_options(synchronize_session=False))
        wrote(self._session)
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
        wrote(self._session)

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
        wrote(self._session)
        return int(getattr(result, "rowcount", 0) or 0)
