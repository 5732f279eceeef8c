"""The live line view's numbers, gathered in one place for the dashboard and `/api/v1/summary`.

Responsible for: choosing the window and bucket of the throughput chart and which queries make one view.
Not responsible for: SQL (pipeline.db.audit_api_queries) or HTML (templates, pipeline.web.charts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.db import audit_api_queries as q
from pipeline.db.audit import UnitView
from pipeline.db.session import Database

DEFAULT_WINDOW = timedelta(hours=8)
DEFAULT_BUCKET = timedelta(minutes=15)
STUCK_SHOWN = 10


@dataclass(frozen=True, slots=True)
class LineSnapshot:
    """Everything the live view shows, as of `at`."""

    at: datetime
    by_state: dict[str, int]
    total: int
    stations: list[q.StationYield]
    ports: list[q.StationYield]
    pareto: list[tuple[str, int]]
    throughput: list[tuple[datetime, int]]
    bucket: timedelta
    stuck: int
    stuck_seconds: float
    stuck_units: list[UnitView]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's summary)."""
        return {
            "at": self.at.isoformat(),
            "units_by_state": self.by_state,
            "total": self.total,
            "stations": [yield_dict(s) for s in self.stations],
            "ports": [yield_dict(p) for p in self.ports],
            "failures": [{"reason": r, "count": n} for r, n in self.pareto],
            "throughput": {
                "bucket_seconds": int(self.bucket.total_seconds()),
                "points": [{"start": t.isoformat(), "assigned": n} for t, n in self.throughput],
            },
            "stuck": {
                "count": self.stuck,
                "threshold_seconds": self.stuck_seconds,
                "oldest": [u.registration_id for u in self.stuck_units],
            },
        }


def yield_dict(y: q.StationYield) -> dict[str, Any]:
    return {
        "station": y.station,
        **({"port": y.port} if y.port is not None else {}),
        "passed": y.passed,
        "failed": y.failed,
        "total": y.total,
        "yield": yield_ratio(y),
    }


def yield_ratio(y: q.StationYield) -> float | None:
    """PASS / (PASS + FAIL), or None before the first verdict."""
    decided = y.passed + y.failed
    return round(y.passed / decided, 4) if decided else None


def snapshot(
    db: Database,
    *,
    stuck_seconds: float,
    window: timedelta = DEFAULT_WINDOW,
    bucket: timedelta = DEFAULT_BUCKET,
) -> LineSnapshot:
    """Gather the live view now."""
    now = datetime.now(UTC)
    stuck_before = now - timedelta(seconds=stuck_seconds)
    by_state = q.units_by_state(db)
    start = _floor(now - window, bucket)
    stations, ports = q.station_yield(db)
    return LineSnapshot(
        at=now,
        by_state=by_state,
        total=sum(by_state.values()),
        stations=stations,
        ports=ports,
        pareto=q.failure_pareto(db),
        throughput=q.throughput(db, since=start, bucket=bucket),
        bucket=bucket,
        stuck=q.stuck_count(db, older_than=stuck_before),
        stuck_seconds=stuck_seconds,
        stuck_units=q.list_units(
            db, q.UnitFilter(stuck_before=stuck_before), limit=STUCK_SHOWN, descending=False, after=None
        ).items,
    )


def _floor(when: datetime, bucket: timedelta) -> datetime:
    seconds = int(bucket.total_seconds())
    return datetime.fromtimestamp(int(when.timestamp()) // seconds * seconds, UTC)
