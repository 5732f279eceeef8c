"""Map the domain `Unit` to a `units` row and back.

Responsible for: the field-by-field correspondence, `stage_times` <-> `<state>_at` columns and
`Failure` <-> `failure_*` columns.
Not responsible for: queries or transactions (pipeline.db.repositories).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.db.tables import STAGE_COLUMNS, UnitRow
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState

_PLAIN_FIELDS = (
    "serial",
    "mac",
    "line",
    "station",
    "port",
    "product",
    "batch",
    "group_id",
    "device_id",
    "assigned_hub",
    "config_sha256",
    "attempts",
    "rework_count",
    "rework_released",
    "next_check_at",
    "checks",
    "key_store",
    "key_source",
    "key_fingerprint",
    "station_scanned_at",
    "assignment_overdue_at",
    "assignment_overdue_reason",
)


def unit_from_row(row: UnitRow) -> Unit:
    """Build a domain unit from its row."""
    unit = Unit(
        registration_id=row.registration_id,
        mode=EnrollmentMode(row.mode),
        state=UnitState(row.state),
        failure=_failure_from_row(row),
        stage_times={s: t for s in STAGE_COLUMNS if (t := getattr(row, f"{s}_at")) is not None},
        updated_at=row.updated_at,
        **{name: getattr(row, name) for name in _PLAIN_FIELDS},  # type: ignore[arg-type]
    )
    return unit


def new_row(unit: Unit, now: datetime | None = None) -> UnitRow:
    """A new row for a unit that is not stored yet."""
    now = now or datetime.now(UTC)
    row = UnitRow(registration_id=unit.registration_id, created_at=now)
    copy_to_row(unit, row, now)
    return row


def copy_to_row(unit: Unit, row: UnitRow, now: datetime | None = None) -> None:
    """Copy every field of `unit` onto `row` (the registration ID never changes)."""
    unknown = set(unit.stage_times) - set(STAGE_COLUMNS)
    if unknown:
        raise ValueError(f"unit {unit.registration_id}: no column for stage time(s) {sorted(unknown)}")
    for name in _PLAIN_FIELDS:
        setattr(row, name, getattr(unit, name))
    row.mode = unit.mode.value
    row.state = unit.state.value
    for stage in STAGE_COLUMNS:
        setattr(row, f"{stage}_at", unit.stage_times.get(stage))
    failure = unit.failure
    row.failure_stage = failure.stage if failure else None
    row.failure_reason = failure.reason if failure else None
    row.failure_retryable = failure.retryable if failure else None
    row.updated_at = unit.updated_at or now or datetime.now(UTC)


def _failure_from_row(row: UnitRow) -> Failure | None:
    if row.failure_stage is None:
        return None
    return Failure(
        stage=row.failure_stage,
        reason=row.failure_reason or "",
        retryable=bool(row.failure_retryable),
    )
