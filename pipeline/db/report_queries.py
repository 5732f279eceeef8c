"""Queries of the shift report: the units scanned in a time window, streamed, with their stage times.

Responsible for: reading; one pass over the window's units from a server-side cursor.
Not responsible for: statistics or rendering (pipeline.reports.shift).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pipeline.db.session import Database
from pipeline.db.tables import STAGE_COLUMNS, UnitRow

BATCH = 1000


@dataclass(frozen=True, slots=True)
class ShiftUnit:
    """What the report needs of one unit."""

    registration_id: str
    station: str
    state: str
    failure_reason: str | None
    stage_times: dict[str, datetime | None]


def units_scanned_between(db: Database, since: datetime, until: datetime) -> Iterator[ShiftUnit]:
    """Units whose (last) scan is in [since, until), oldest first, streamed."""
    columns = [getattr(UnitRow, f"{stage}_at") for stage in STAGE_COLUMNS]
    query = (
        select(UnitRow.registration_id, UnitRow.station, UnitRow.state, UnitRow.failure_reason, *columns)
        .where(UnitRow.scanned_at >= since, UnitRow.scanned_at < until)
        .order_by(UnitRow.scanned_at, UnitRow.id)
    )
    with db.session() as session:
        for row in session.execute(query, execution_options={"yield_per": BATCH}):
            times = dict(zip(STAGE_COLUMNS, row[4:], strict=True))
            yield ShiftUnit(row[0], row[1], row[2], row[3], times)
