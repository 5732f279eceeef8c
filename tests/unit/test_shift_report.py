"""Shift windows and shift report statistics (pure)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta

import pytest

from pipeline.db.report_queries import ShiftUnit
from pipeline.reports import shift

T = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
BOUNDS = [time(6), time(14), time(22)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (
            datetime(2026, 12, 3, 6, 0, tzinfo=UTC),
            (datetime(2026, 12, 2, 22, 0), datetime(2026, 12, 3, 6, 0)),
        ),
        (
            datetime(2026, 12, 3, 13, 59, tzinfo=UTC),
            (datetime(2026, 12, 2, 22, 0), datetime(2026, 12, 3, 6, 0)),
        ),
        (
            datetime(2026, 12, 3, 23, 0, tzinfo=UTC),
            (datetime(2026, 12, 3, 14, 0), datetime(2026, 12, 3, 22, 0)),
        ),
        (
            datetime(2026, 12, 3, 2, 0, tzinfo=UTC),
            (datetime(2026, 12, 2, 14, 0), datetime(2026, 12, 2, 22, 0)),
        ),
    ],
)
def test_last_complete_shift(now: datetime, expected: tuple[datetime, datetime]) -> None:
    assert shift.last_shift(now, BOUNDS) == tuple(t.replace(tzinfo=UTC) for t in expected)


def test_one_boundary_makes_a_day_long_shift() -> None:
    since, until = shift.last_shift(datetime(2026, 12, 3, 7, tzinfo=UTC), [time(6)])
    assert until - since == timedelta(days=1)


def test_bad_boundaries_say_how_to_write_them() -> None:
    with pytest.raises(shift.ShiftError, match="HH:MM"):
        shift.parse_boundaries(["6 am"])
    assert shift.parse_boundaries(["14:00", "06:00"]) == [time(6), time(14)]


def unit(station: str, state: str, reason: str | None = None, seconds: float = 10.0) -> ShiftUnit:
    times = {s: None for s in ("scanned", "keyed", "enrolled", "config_issued", "flashed", "assigned")}
    times["scanned"], times["keyed"] = T, T + timedelta(seconds=1)
    if state == "assigned":
        times.update(enrolled=T + timedelta(seconds=2), config_issued=T + timedelta(seconds=3))
        times.update(flashed=T + timedelta(seconds=4), assigned=T + timedelta(seconds=seconds))
    return ShiftUnit("rid", station, state, reason, dict(times))


def test_statistics_and_both_renderings() -> None:
    units = [unit("S1", "assigned", seconds=s) for s in (5, 6, 7, 8, 30)] + [
        unit("S1", "failed", "read-back mismatch"),
        unit("S2", "failed", "read-back mismatch"),
        unit("S2", "failed", "no answer"),
    ]
    report = shift.build(iter(units), T, T + timedelta(hours=8))
    assert report.units == 8
    assert report.stations() == [("S1", 5, 1, 5 / 6), ("S2", 0, 2, 0.0)]
    assert report.reasons.most_common() == [("read-back mismatch", 2), ("no answer", 1)]
    total = dict((name, rest) for name, *rest in report.stage_stats())["scanned->assigned"]
    assert total == [5, 7.0, 30.0, 30.0]
    rows = list(csv.reader(io.StringIO(shift.to_csv(report))))
    assert ["failure_pareto", "read-back mismatch", "2"] in rows
    assert ["station_yield", "S1", "5", "1", "0.8333"] in rows
    html = shift.to_html(report)
    assert "<h2>Units: 8</h2>" in html and "read-back mismatch" in html and "<script" not in html
