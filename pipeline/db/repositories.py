"""The SQL unit repository (port `UnitRepository` of pipeline.service.unit_of_work).

Responsible for: queries and row locking for units, inside the caller's session (one transaction per
unit of work). Sealed keys, groups and stations are in pipeline.db.line_records; the outbox and
processed-message records in pipeline.db.delivery.
Not responsible for: committing (SqlUnitOfWork) or the audit chain (pipeline.db.audit_chain).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from pipeline.db import tables as t
from pipeline.db.unit_mapping import copy_to_row, new_row, unit_from_row
from pipeline.domain.model import Unit, UnitState
from pipeline.service import unit_of_work as ports


def _now() -> datetime:
    return datetime.now(UTC)


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory-lock key for `text` (stable across processes, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _canonical_mac(mac: str) -> str:
    return mac.strip().lower().replace("-", ":")


def wrote(session: Session) -> None:
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
        self._identities = _IdentityReads()

    def forget(self) -> None:
        """Drop what this transaction knew (its locks end with commit or rollback)."""
        self._loaded.clear()
        self._locked.clear()
        self._identities = _IdentityReads()

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

    def find_identity_conflict(self, serial: str, mac: str) -> Unit | None:
        """PostgreSQL: first take transaction-scoped advisory locks on the serial and the MAC (one
        statement, keys in a fixed order so two workers cannot deadlock on one pair; SQLite serialises
        writers already with BEGIN IMMEDIATE). Then one indexed query, without flushing the batch so far:
        units this transaction added are checked in memory instead. Both are skipped for a pair that
        `lock_identities` locked and read already."""
        mac = _canonical_mac(mac)
        reads = self._identities
        if not reads.covers(serial, mac):
            self._lock_identity_keys({(serial, mac)})
            by_mac = t.UnitRow.mac == mac
            query = (
                select(t.UnitRow)
                .where(by_mac | (t.UnitRow.serial == serial))
                .order_by(by_mac.desc(), t.UnitRow.updated_at.desc())  # a MAC match first, as find_by_mac
                .limit(1)
            )
            with self._session.no_autoflush:
                stored = self._session.scalars(query).first()
            rows = reads.added + ([stored] if stored else [])
        else:
            rows = reads.added + reads.stored
        for matches in ([r for r in rows if r.mac == mac], [r for r in rows if r.serial == serial]):
            if matches:
                return unit_from_row(max(matches, key=lambda r: r.updated_at))
        return None

    def lock_identities(self, identities: list[tuple[str, str]]) -> None:
        pairs = {(serial, _canonical_mac(mac)) for serial, mac in identities}
        pairs = {(serial, mac) for serial, mac in pairs if not self._identities.covers(serial, mac)}
        if not pairs:
            return
        self._lock_identity_keys(pairs)
        serials, macs = {serial for serial, _ in pairs}, {mac for _, mac in pairs}
        query = select(t.UnitRow).where(t.UnitRow.mac.in_(macs) | t.UnitRow.serial.in_(serials))
        with self._session.no_autoflush:
            self._identities.stored.extend(self._session.scalars(query))
        self._identities.serials |= serials
        self._identities.macs |= macs

    def _lock_identity_keys(self, pairs: set[tuple[str, str]]) -> None:
        """Advisory locks on these serials and MACs, in key order (PostgreSQL only)."""
        if self._session.get_bind().dialect.name != "postgresql":
            return
        keys = {_lock_key(f"serial:{serial}") for serial, _ in pairs} | {
            _lock_key(f"mac:{m}") for _, m in pairs
        }
        self._session.execute(select(*(func.pg_advisory_xact_lock(key) for key in sorted(keys))))

    def find_by_mac(self, mac: str) -> Unit | None:
        return self._latest(t.UnitRow.mac == _canonical_mac(mac))

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
        self._identities.added.append(row)
        wrote(self._session)

    def save(self, unit: Unit) -> None:
        row = self._loaded.get(unit.registration_id)
        if row is None or row not in self._session:  # not read in this session (or expunged)
            row = self._row(unit.registration_id)
        if row is None:
            raise LookupError(f"unit {unit.registration_id} was never added; add() it first")
        copy_to_row(unit, row, _now())
        wrote(self._session)

    def stuck(
        self, states: tuple[UnitState, ...], updated_before: datetime, limit: int, *, claim: bool = False
    ) -> list[Unit]:
        query = (
            select(t.UnitRow)
            .where(t.UnitRow.state.in_([s.value for s in states]), t.UnitRow.updated_at < updated_before)
            .order_by(t.UnitRow.updated_at, t.UnitRow.id)
            .limit(limit)
        )
        if claim:  # PostgreSQL: rows another worker holds are skipped, not waited for (SQLite: dropped)
            query = query.with_for_update(skip_locked=True)
        return [
            unit_from_row(r) for r in self._session.scalars(query.execution_options(populate_existing=True))
        ]

    def due_for_check(
        self,
        now: datetime,
        limit: int,
        *,
        settled_before: datetime | None = None,
        window_start: datetime | None = None,
    ) -> list[Unit]:
        u = t.UnitRow
        flashed = and_(u.state == UnitState.FLASHED.value, u.next_check_at <= now)
        conditions = [flashed]
        if settled_before is not None and window_start is not None:
            waiting = (UnitState.CONFIG_ISSUED, UnitState.FAILED, UnitState.QUARANTINED)
            due = or_(u.next_check_at <= now, and_(u.next_check_at.is_(None), u.updated_at <= settled_before))
            conditions.append(
                and_(
                    u.state.in_([s.value for s in waiting]),
                    u.config_sha256.is_not(None),  # a config was issued: a device may hold it
                    u.updated_at >= window_start,
                    due,
                )
            )
        query = (
            select(u)
            .where(or_(*conditions))
            .order_by(func.coalesce(u.next_check_at, u.updated_at), u.id)
            .limit(limit)
        )
        return [unit_from_row(r) for r in self._session.scalars(query)]

    def count_by_state(self) -> dict[str, int]:
        query = select(t.UnitRow.state, func.count()).group_by(t.UnitRow.state)
        return {state: count for state, count in self._session.execute(query).tuples()}


@dataclass
class _IdentityReads:
    """What a transaction knows of unit identities: the serials and MACs it locked and read, the stored
    rows that matched them, and the rows it added itself (flushed or not)."""

    serials: set[str] = field(default_factory=set)
    macs: set[str] = field(default_factory=set)
    stored: list[t.UnitRow] = field(default_factory=list)
    added: list[t.UnitRow] = field(default_factory=list)

    def covers(self, serial: str, mac: str) -> bool:
        return serial in self.serials and mac in self.macs
