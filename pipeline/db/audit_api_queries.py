"""Read-side queries of the audit API and the dashboard (issue #12): filtered, keyset-paged units, line
statistics, and exports streamed from a server-side cursor.

Responsible for: every SQL the web app runs against units and the audit log, each answered from an index
(migration `web`) so that a 100,000-unit line stays well under 100 ms per query.
Not responsible for: HTTP, auth or presentation (pipeline.web), or writing anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, cast, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from pipeline.db.audit import AuditRecordView, UnitView, _record_view, _unit_view
from pipeline.db.session import Database
from pipeline.db.tables import AuditRow, OutboxRow, UnitRow, UTCDateTime
from pipeline.domain.identity import IdentityError, parse_mac

STREAM_BATCH = 1000
STUCK_STATES = ("scanned", "keyed", "enrolled", "config_issued")
"""States a unit only passes through: sitting in one past the reconcile threshold means it is stuck."""
PASS_STATES = ("flashed", "assigned")
"""A station PASSed a unit once its config is flashed and read back."""


@dataclass(frozen=True, slots=True)
class UnitFilter:
    """Filters of a unit listing; every given field must match. `q` searches serial, MAC and ID."""

    state: str | None = None
    line: str | None = None
    station: str | None = None
    port: str | None = None
    product: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    stuck_before: datetime | None = None
    verdict: str | None = None  # "pass" (flashed or assigned) or "fail" (failed)
    assigned_since: datetime | None = None
    assigned_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class UnitPage:
    """One page of units and the keyset cursor (updated_at, id) of its last row, if more may follow."""

    items: list[UnitView]
    next_after: tuple[datetime, int] | None


@dataclass(frozen=True, slots=True)
class StationYield:
    """PASS/FAIL counts of one station (port None) or one port of a station."""

    station: str
    port: str | None
    passed: int
    failed: int
    total: int


def _conditions(f: UnitFilter) -> list[ColumnElement[bool]]:
    equal = {
        UnitRow.state: f.state,
        UnitRow.line: f.line,
        UnitRow.station: f.station,
        UnitRow.port: f.port,
        UnitRow.product: f.product,
    }
    conds: list[ColumnElement[bool]] = [col == value for col, value in equal.items() if value is not None]
    if f.reason is not None:  # "" is the Pareto's "(no reason)" bar
        conds.append(UnitRow.failure_reason == f.reason if f.reason else UnitRow.failure_reason.is_(None))
    if f.since is not None:
        conds.append(UnitRow.updated_at >= f.since)
    if f.until is not None:
        conds.append(UnitRow.updated_at < f.until)
    if f.stuck_before is not None:
        conds += [UnitRow.state.in_(STUCK_STATES), UnitRow.updated_at < f.stuck_before]
    if f.q:
        conds.append(_search(f.q.strip()))
    if f.verdict is not None:
        conds.append(UnitRow.state.in_(PASS_STATES) if f.verdict == "pass" else UnitRow.state == "failed")
    if f.assigned_since is not None:
        conds.append(UnitRow.assigned_at >= f.assigned_since)
    if f.assigned_until is not None:
        conds.append(UnitRow.assigned_at < f.assigned_until)
    return conds


def _search(text: str) -> ColumnElement[bool]:
    options = [UnitRow.registration_id == text.lower(), UnitRow.serial == text]
    with contextlib.suppress(IdentityError):  # not MAC-shaped: ID or serial only
        options.append(UnitRow.mac == parse_mac(text))
    return or_(*options)


def list_units(
    db: Database, f: UnitFilter, *, limit: int, descending: bool, after: tuple[datetime, int] | None
) -> UnitPage:
    """One page of units sorted by (updated_at, id), starting after the keyset cursor `after`."""
    query = _unit_columns().where(*_conditions(f))
    key = tuple_(UnitRow.updated_at, UnitRow.id)
    if after is not None:
        bound = tuple_(literal(after[0], UTCDateTime()), literal(after[1]))
        query = query.where(key < bound if descending else key > bound)
    order = (UnitRow.updated_at.desc(), UnitRow.id.desc()) if descending else (UnitRow.updated_at, UnitRow.id)
    query = query.order_by(*order).limit(limit + 1)
    with db.session() as session:
        rows = list(session.execute(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return UnitPage([_as_view(r) for r in rows], (rows[-1].updated_at, rows[-1].id) if more else None)


def _unit_columns() -> Select[Any]:
    # Plain rows, not ORM objects: no identity map or instance state for read-only pages and exports.
    return select(*UnitRow.__table__.columns)


def _as_view(row: Any) -> UnitView:
    return _unit_view(row)  # a Row has the same attribute names as a UnitRow


def count_units(db: Database, f: UnitFilter) -> int:
    """How many units match `f`."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(UnitRow).where(*_conditions(f))) or 0)


def units_by_state(db: Database) -> dict[str, int]:
    """Unit count per state (states without units are absent)."""
    query = select(UnitRow.state, func.count()).group_by(UnitRow.state)
    with db.session() as session:
        return {state: int(n) for state, n in session.execute(query)}


def station_yield(db: Database) -> tuple[list[StationYield], list[StationYield]]:
    """PASS (flashed or assigned) and FAIL (failed) per station and per station port, from one scan."""
    passed = func.sum(cast(UnitRow.state.in_(PASS_STATES), Integer))
    failed = func.sum(cast(UnitRow.state == "failed", Integer))
    cols = (UnitRow.station, UnitRow.port)
    query = select(*cols, passed, failed, func.count()).group_by(*cols).order_by(*cols)
    with db.session() as session:
        rows = list(session.execute(query))
    ports = [StationYield(r[0], r[1] or "", int(r[2] or 0), int(r[3] or 0), int(r[4])) for r in rows]
    totals: dict[str, list[int]] = {}
    for p in ports:
        t = totals.setdefault(p.station, [0, 0, 0])
        t[0], t[1], t[2] = t[0] + p.passed, t[1] + p.failed, t[2] + p.total
    stations = [StationYield(name, None, *t) for name, t in totals.items()]
    return stations, ports


def failure_pareto(db: Database, *, limit: int = 20) -> list[tuple[str, int]]:
    """Failed units grouped by reason, most frequent first."""
    reason = func.coalesce(UnitRow.failure_reason, "")
    query = (
        select(reason, func.count())
        .where(UnitRow.state == "failed")
        .group_by(reason)
        .order_by(func.count().desc(), reason)
        .limit(limit)
    )
    with db.session() as session:
        return [(r, int(n)) for r, n in session.execute(query)]


def throughput(db: Database, *, since: datetime, bucket: timedelta) -> list[tuple[datetime, int]]:
    """Units assigned per time bucket from `since` on (empty buckets included), oldest first."""
    seconds = max(1, int(bucket.total_seconds()))
    with db.session() as session:
        epoch = _epoch_seconds(session)
        slot = cast(func.floor((epoch - since.timestamp()) / seconds), Integer)
        query = select(slot, func.count()).where(UnitRow.assigned_at >= since).group_by(slot)
        counts = {int(s): int(n) for s, n in session.execute(query) if s is not None}
    last = max(counts, default=0)
    now_slot = max(last, int((datetime.now(since.tzinfo) - since).total_seconds() // seconds))
    return [(since + i * bucket, counts.get(i, 0)) for i in range(now_slot + 1)]


def _epoch_seconds(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps naive UTC text; julianday gives fractional days since noon 4714 BC.
        return (func.julianday(UnitRow.assigned_at) - 2440587.5) * 86400.0
    return func.extract("epoch", UnitRow.assigned_at)


def stuck_count(db: Database, *, older_than: datetime) -> int:
    """Units in a transient state whose last change is older than `older_than`."""
    return count_units(db, UnitFilter(stuck_before=older_than))


def stream_units(db: Database, f: UnitFilter) -> Iterator[UnitView]:
    """Every unit matching `f` in (updated_at, id) order, fetched in batches from a server-side cursor."""
    query = _unit_columns().where(*_conditions(f)).order_by(UnitRow.updated_at, UnitRow.id)
    with db.session() as session:
        for row in session.execute(query, execution_options={"yield_per": STREAM_BATCH}):
            yield _as_view(row)


def stream_records(
    db: Database, *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[tuple[AuditRecordView, str]]:
    """Audit records in id order with each one's prev_hash, from a server-side cursor."""
    query = select(AuditRow).order_by(AuditRow.id)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    with db.session() as session:
        for row in session.scalars(query, execution_options={"yield_per": STREAM_BATCH}):
            yield _record_view(row), row.prev_hash


def outbox_backlog(db: Database) -> tuple[int, datetime | None]:
    """Unpublished outbox messages and the creation time of the oldest one."""
    query = select(func.count(), func.min(OutboxRow.created_at)).where(OutboxRow.published_at.is_(None))
    with db.session() as session:
        count, oldest = session.execute(query).one()
    if isinstance(oldest, str):  # SQLite returns MIN() of a timestamp column as text
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
    return int(count or 0), oldest
