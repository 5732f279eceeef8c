"""Read-side audit queries (architecture §9): units by filter, one unit's timeline, chain check.

Responsible for: answering "what happened to unit X", "which units of line 2 never came online",
exporting results as CSV/JSON, and verifying the hash chain. Results are plain frozen dataclasses.
Not responsible for: writing audit records (pipeline.db.audit_chain) or presentation (pipeline.cli).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from pipeline.db.audit_chain import ChainReport, verify_rows
from pipeline.db.session import Database
from pipeline.db.tables import STAGE_COLUMNS, AuditHeadRow, AuditRow, UnitRow
from pipeline.domain.identity import IdentityError, parse_mac

VERIFY_BATCH = 1000


@dataclass(frozen=True, slots=True)
class UnitView:
    """One unit as audit staff see it: identity, placement, outcome and every stage time."""

    registration_id: str
    serial: str
    mac: str
    line: str
    station: str
    product: str
    batch: str | None
    mode: str
    state: str
    device_id: str | None
    assigned_hub: str | None
    failure_stage: str | None
    failure_reason: str | None
    attempts: int
    rework_count: int
    station_scanned_at: datetime | None  # the station's scan time; `scanned_at` is the pipeline's receipt
    assignment_overdue_at: datetime | None  # set while a flashed unit waits too long for DPS
    assignment_overdue_reason: str | None
    stage_times: dict[str, datetime | None]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: stage times become `<stage>_at` ISO 8601 strings (or None)."""
        flat: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        stages = flat.pop("stage_times")
        flat.update({f"{stage}_at": when for stage, when in stages.items()})
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in flat.items()}


UNIT_COLUMNS = (
    *(
        f.name
        for f in dataclasses.fields(UnitView)
        if f.name not in ("stage_times", "created_at", "updated_at")
    ),
    "created_at",
    "updated_at",
    *(f"{stage}_at" for stage in STAGE_COLUMNS),
)
"""Column order of a unit in CSV/JSON exports (as produced by `UnitView.to_dict`)."""


@dataclass(frozen=True, slots=True)
class AuditRecordView:
    """One audit record, with its detail parsed."""

    id: int
    at: datetime
    kind: str
    actor: str
    registration_id: str | None
    detail: dict[str, Any]
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class Timeline:
    """A unit and its audit records, oldest first."""

    unit: UnitView
    records: list[AuditRecordView]


def units_query(
    db: Database,
    *,
    state: str | None = None,
    station: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    overdue: bool = False,
) -> list[UnitView]:
    """Units matching every given filter; `since`/`until` bound `updated_at`. Oldest update first.

    `overdue` keeps only units flagged as waiting too long for DPS to assign them.
    """
    query = select(UnitRow).order_by(UnitRow.updated_at, UnitRow.id)
    query = _filtered(query, state=state, station=station, line=line, since=since, until=until)
    if overdue:
        query = query.where(UnitRow.assignment_overdue_at.is_not(None))
    if limit is not None:
        query = query.limit(limit)
    with db.session() as session:
        return [_unit_view(row) for row in session.scalars(query)]


def _filtered(
    query: Select[tuple[UnitRow]],
    *,
    state: str | None,
    station: str | None,
    line: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[tuple[UnitRow]]:
    if state is not None:
        query = query.where(UnitRow.state == state)
    if station is not None:
        query = query.where(UnitRow.station == station)
    if line is not None:
        query = query.where(UnitRow.line == line)
    if since is not None:
        query = query.where(UnitRow.updated_at >= since)
    if until is not None:
        query = query.where(UnitRow.updated_at < until)
    return query


def present_values(db: Database, column: str) -> list[str]:
    """The distinct values of a unit's `line` or `station` in the database, sorted (for error messages)."""
    attribute = {"line": UnitRow.line, "station": UnitRow.station}[column]
    with db.session() as session:
        return sorted(v for v in session.scalars(select(attribute).distinct()) if v is not None)


def unit_timeline(db: Database, key: str) -> Timeline | None:
    """The unit whose registration ID, serial or MAC (any separator style) is `key`, with its records."""
    with db.session() as session:
        row = _find_unit(session, key.strip())
        if row is None:
            return None
        query = select(AuditRow).where(AuditRow.registration_id == row.registration_id).order_by(AuditRow.id)
        records = [_record_view(r) for r in session.scalars(query)]
        return Timeline(_unit_view(row), records)


def _find_unit(session: Session, key: str) -> UnitRow | None:
    conditions = [
        UnitRow.registration_id == key,
        UnitRow.registration_id == key.lower(),
        UnitRow.serial == key,
    ]
    with contextlib.suppress(IdentityError):  # not MAC-shaped: match by ID or serial only
        conditions.append(UnitRow.mac == parse_mac(key))
    query = select(UnitRow).where(or_(*conditions)).order_by(UnitRow.updated_at.desc()).limit(1)
    return session.scalars(query).first()


def verify_chain(db: Database) -> ChainReport:
    """Walk the whole audit log in id order and check every link and hash (one snapshot of log and head)."""
    with db.snapshot_session() as session:
        head = session.get(AuditHeadRow, 1)
        return verify_rows(_all_records(session), head)


def _all_records(session: Session) -> Iterator[AuditRow]:
    last = 0
    while True:
        query = select(AuditRow).where(AuditRow.id > last).order_by(AuditRow.id).limit(VERIFY_BATCH)
        batch = list(session.scalars(query))
        if not batch:
            return
        yield from batch
        last = batch[-1].id
        session.expunge_all()


def audit_records(
    db: Database, *, since: datetime | None = None, until: datetime | None = None
) -> list[AuditRecordView]:
    """Audit records in id order, optionally bounded by time."""
    query = select(AuditRow).order_by(AuditRow.id)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    with db.session() as session:
        return [_record_view(r) for r in session.scalars(query)]


def write_json(items: Iterable[UnitView | AuditRecordView], stream: IO[str]) -> None:
    """Write items as one JSON array."""
    json.dump([item.to_dict() for item in items], stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def write_csv(items: Sequence[UnitView | AuditRecordView], stream: IO[str]) -> None:
    """Write items as CSV with a header row (nested values as JSON text)."""
    rows = [item.to_dict() for item in items]
    fields = list(rows[0]) if rows else list(UNIT_COLUMNS)
    writer = csv.DictWriter(stream, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})


def _unit_view(row: UnitRow) -> UnitView:
    return UnitView(
        registration_id=row.registration_id,
        serial=row.serial,
        mac=row.mac,
        line=row.line,
        station=row.station,
        product=row.product,
        batch=row.batch,
        mode=row.mode,
        state=row.state,
        device_id=row.device_id,
        assigned_hub=row.assigned_hub,
        failure_stage=row.failure_stage,
        failure_reason=row.failure_reason,
        attempts=row.attempts,
        rework_count=row.rework_count,
        station_scanned_at=row.station_scanned_at,
        assignment_overdue_at=row.assignment_overdue_at,
        assignment_overdue_reason=row.assignment_overdue_reason,
        stage_times={stage: getattr(row, f"{stage}_at") for stage in STAGE_COLUMNS},
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _record_view(row: AuditRow) -> AuditRecordView:
    return AuditRecordView(
        row.id, row.at, row.kind, row.actor, row.registration_id, json.loads(row.detail), row.hash
    )
