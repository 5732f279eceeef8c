"""The shift report: units, yield per station, failure Pareto and stage durations of one shift, written as
CSV and HTML (issue #12). Produced on demand (`edgeline report shift`) and by a scheduled job at every
shift boundary (`shift_boundaries`, UTC).

Responsible for: shift windows, the statistics (pure, from `ShiftUnit`s) and both renderings.
Not responsible for: reading the database (pipeline.db.report_queries) or scheduling (pipeline.scheduler).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from html import escape
from pathlib import Path

from pipeline.db.report_queries import ShiftUnit

STAGE_PAIRS = (
    ("scanned", "keyed"),
    ("keyed", "enrolled"),
    ("enrolled", "config_issued"),
    ("config_issued", "flashed"),
    ("flashed", "assigned"),
    ("scanned", "assigned"),
)
PASS_STATES = ("flashed", "assigned")


class ShiftError(ValueError):
    """A shift boundary setting that cannot be used; says which and how to write it."""


def parse_boundaries(texts: Sequence[str]) -> list[time]:
    """`("06:00", "14:00", "22:00")` into sorted UTC times."""
    try:
        times = sorted(time.fromisoformat(t.strip()).replace(tzinfo=None) for t in texts)
    except ValueError:
        raise ShiftError(
            f"shift_boundaries {list(texts)!r}: write UTC times as HH:MM, e.g. 06:00,14:00"
        ) from None
    if not times:
        raise ShiftError("shift_boundaries is empty: give at least one HH:MM (UTC)")
    return times


def last_shift(now: datetime, boundaries: Sequence[time]) -> tuple[datetime, datetime]:
    """The latest complete shift before `now`: from the boundary before the last one to the last one."""
    points = [
        datetime.combine(now.date() + timedelta(days=d), b, UTC) for d in (-2, -1, 0) for b in boundaries
    ]
    past = [p for p in points if p <= now]
    return past[-2], past[-1]


@dataclass
class ShiftReport:
    """Statistics of one shift."""

    since: datetime
    until: datetime
    units: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    station_pass: Counter[str] = field(default_factory=Counter)
    station_fail: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    durations: dict[str, list[float]] = field(
        default_factory=lambda: {f"{a}->{b}": [] for a, b in STAGE_PAIRS}
    )

    def add(self, unit: ShiftUnit) -> None:
        """Count one unit."""
        self.units += 1
        self.by_state[unit.state] += 1
        if unit.state in PASS_STATES:
            self.station_pass[unit.station] += 1
        elif unit.state == "failed":
            self.station_fail[unit.station] += 1
            self.reasons[unit.failure_reason or "(no reason)"] += 1
        for a, b in STAGE_PAIRS:
            start, end = unit.stage_times.get(a), unit.stage_times.get(b)
            if start is not None and end is not None and end >= start:
                self.durations[f"{a}->{b}"].append((end - start).total_seconds())

    def stations(self) -> list[tuple[str, int, int, float | None]]:
        """(station, PASS, FAIL, yield) rows, by station name."""
        names = sorted(set(self.station_pass) | set(self.station_fail))
        rows = []
        for name in names:
            ok, bad = self.station_pass[name], self.station_fail[name]
            rows.append((name, ok, bad, ok / (ok + bad) if ok + bad else None))
        return rows

    def stage_stats(self) -> list[tuple[str, int, float | None, float | None, float | None]]:
        """(stage pair, count, p50, p95, max) in seconds."""
        return [(name, len(v), *_quantiles(sorted(v))) for name, v in self.durations.items()]


def _quantiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    last = len(values) - 1
    return values[min(last, int(0.5 * len(values)))], values[min(last, int(0.95 * len(values)))], values[-1]


def build(units: Iterable[ShiftUnit], since: datetime, until: datetime) -> ShiftReport:
    """The report of `units` (one pass; they are not kept)."""
    report = ShiftReport(since, until)
    for unit in units:
        report.add(unit)
    return report


def to_csv(report: ShiftReport) -> str:
    """CSV with one section per table: `section,key,...` rows under a header."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "key", "value1", "value2", "value3", "value4"])
    w.writerow(["shift", "since", report.since.isoformat()])
    w.writerow(["shift", "until", report.until.isoformat()])
    w.writerow(["units", "total", report.units])
    for state, n in sorted(report.by_state.items()):
        w.writerow(["units", state, n])
    for name, ok, bad, ratio in report.stations():
        w.writerow(["station_yield", name, ok, bad, "" if ratio is None else f"{ratio:.4f}"])
    for reason, n in report.reasons.most_common():
        w.writerow(["failure_pareto", reason, n])
    for name, count, p50, p95, top in report.stage_stats():
        w.writerow(
            ["stage_seconds", name, count, *("" if v is None else f"{v:.3f}" for v in (p50, p95, top))]
        )
    return out.getvalue()


def to_html(report: ShiftReport) -> str:
    """A self-contained HTML page (no scripts, no external resources)."""

    def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
        cells = "".join(f"<th>{escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{cells}</tr>{body}</table>"

    title = f"Shift {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
    return (
        f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{escape(title)}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:16px}"
        "table{border-collapse:collapse;margin:0 0 16px}"
        "td,th{border:1px solid #ccd;padding:3px 8px;text-align:left}</style>"
        f"<h1>{escape(title)}</h1><h2>Units: {report.units}</h2>"
        + table(["state", "units"], sorted(report.by_state.items()))
        + "<h2>Yield per station</h2>"
        + table(["station", "PASS", "FAIL", "yield"], report.stations())
        + "<h2>Failure reasons (Pareto)</h2>"
        + table(["reason", "units"], report.reasons.most_common())
        + "<h2>Stage durations (seconds)</h2>"
        + table(["stages", "units", "p50", "p95", "max"], report.stage_stats())
        + "</html>\n"
    )


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write(report: ShiftReport, directory: Path) -> tuple[Path, Path]:
    """Write `shift-<since>.csv` and `.html` into `directory` (created); return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"shift-{report.since:%Y%m%dT%H%M}Z"
    csv_path, html_path = stem.with_suffix(".csv"), stem.with_suffix(".html")
    csv_path.write_text(to_csv(report), encoding="utf-8")
    html_path.write_text(to_html(report), encoding="utf-8")
    return csv_path, html_path
