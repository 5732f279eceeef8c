"""Read-side key-ledger queries: which units' device keys came from a given key, and rollover progress.

Responsible for: "which units are affected if this group key leaked" (blast radius) and "how many
units are still on the old key" (rollover), index-backed by `ix_units_key_ledger`.
Not responsible for: recording the ledger (the configurer does, with each issued config).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from pipeline.db.session import Database
from pipeline.db.tables import UnitRow

PAGE = 1000


@dataclass(frozen=True, slots=True)
class LedgerUnit:
    """One unit in a key-ledger listing."""

    registration_id: str
    serial: str
    line: str
    station: str
    state: str
    key_store: str | None
    config_issued_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyUse:
    """How many units got device keys from one key, where, and when."""

    source: str
    fingerprint: str
    key_store: str | None
    units: int
    lines: dict[str, int]
    first_issued: datetime | None
    last_issued: datetime | None


def key_use(db: Database, source: str, fingerprint: str) -> KeyUse:
    """Count, lines and date range of the units whose device key came from `source`/`fingerprint`."""
    where = (UnitRow.key_source == source, UnitRow.key_fingerprint == fingerprint)
    with db.session() as session:
        counts = session.execute(select(UnitRow.line, func.count()).where(*where).group_by(UnitRow.line))
        lines = {line: int(n) for line, n in counts.tuples()}
        first, last, store = session.execute(
            select(
                func.min(UnitRow.config_issued_at),
                func.max(UnitRow.config_issued_at),
                func.max(UnitRow.key_store),
            ).where(*where)
        ).one()
    return KeyUse(source, fingerprint, store, sum(lines.values()), lines, first, last)


def units_from_key(db: Database, source: str, fingerprint: str) -> Iterator[LedgerUnit]:
    """Every unit whose device key came from `source`/`fingerprint`, by registration ID, a page at a time."""
    after = ""
    while True:
        query = (
            select(UnitRow)
            .where(
                UnitRow.key_source == source,
                UnitRow.key_fingerprint == fingerprint,
                UnitRow.registration_id > after,
            )
            .order_by(UnitRow.registration_id)
            .limit(PAGE)
        )
        with db.session() as session:
            rows = list(session.scalars(query))
        for row in rows:
            yield LedgerUnit(
                row.registration_id,
                row.serial,
                row.line,
                row.station,
                row.state,
                row.key_store,
                row.config_issued_at,
            )
        if len(rows) < PAGE:
            return
        after = rows[-1].registration_id


def key_versions(db: Database, source: str) -> list[KeyUse]:
    """Every key version units of `source` were derived from, most units first (rollover progress)."""
    with db.session() as session:
        fingerprints = [
            fp
            for (fp,) in session.execute(
                select(UnitRow.key_fingerprint)
                .where(UnitRow.key_source == source)
                .group_by(UnitRow.key_fingerprint)
            ).tuples()
            if fp is not None
        ]
    uses = [key_use(db, source, fp) for fp in fingerprints]
    return sorted(uses, key=lambda use: -use.units)
