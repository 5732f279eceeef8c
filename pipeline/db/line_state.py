"""`SqlLineState`: per-station unit counts of one line, for the Sparkplug publisher.

Responsible for: two cheap read queries: counts grouped by (station, state), answered from the
`ix_units_line_station_state` index, and each station's most recent failure reason.
Not responsible for: metrics or publishing (`pipeline.sparkplug`).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.db import tables as t
from pipeline.db.session import Database
from pipeline.domain.model import UnitState
from pipeline.sparkplug.model import LineSnapshot, StationState

MAX_REASON = 200


class SqlLineState:
    """Read one line's snapshot from the database."""

    def __init__(self, database: Database, line: str) -> None:
        self._database = database
        self._line = line

    def snapshot(self) -> LineSnapshot:
        """Counts per station and state, and the newest failure of each station that has failures."""
        counts: dict[str, dict[str, int]] = {}
        failed_stations: list[str] = []
        with self._database.session() as session:
            query = (
                select(t.UnitRow.station, t.UnitRow.state, func.count())
                .where(t.UnitRow.line == self._line)
                .group_by(t.UnitRow.station, t.UnitRow.state)
            )
            for station, state, count in session.execute(query).tuples():
                counts.setdefault(station, {})[state] = count
                if state in (UnitState.FAILED.value, UnitState.NOT_ONLINE.value):
                    failed_stations.append(station)
            failures = {station: self._last_failure(session, station) for station in set(failed_stations)}
        return LineSnapshot(
            {
                name: StationState(by_state, failures.get(name, ""))
                for name, by_state in sorted(counts.items())
            }
        )

    def _last_failure(self, session: Session, station: str) -> str:
        query = (
            select(t.UnitRow.registration_id, t.UnitRow.failure_stage, t.UnitRow.failure_reason)
            .where(
                t.UnitRow.line == self._line,
                t.UnitRow.station == station,
                t.UnitRow.state.in_([UnitState.FAILED.value, UnitState.NOT_ONLINE.value]),
            )
            .order_by(t.UnitRow.updated_at.desc(), t.UnitRow.id.desc())
            .limit(1)
        )
        row = session.execute(query).first()
        if row is None:
            return ""
        text = f"{row.registration_id}: {row.failure_stage or '?'}: {row.failure_reason or ''}"
        return text[:MAX_REASON]
