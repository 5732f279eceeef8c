"""`edgeline report shift` over a real database, and the scheduled job's writer."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from web_helpers import T0, seed

from pipeline.cli.main import main
from pipeline.cli.report_run import write_shift_report
from pipeline.db.session import Database


def test_report_shift_writes_csv_and_html(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database, [("assigned", "S1", None)] * 3 + [("failed", "S2", "no answer")])
    monkeypatch.setenv("EDGELINE_DATABASE_URL", database.url)
    since, until = T0.isoformat(), (T0 + timedelta(hours=8)).isoformat()
    code = main(["report", "shift", "--since", since, "--until", until, "--output-dir", str(tmp_path)])
    assert code == 0
    csv_path, html_path = (Path(p) for p in capsys.readouterr().out.split())
    rows = list(csv.reader(csv_path.open()))
    assert ["units", "total", "4"] in rows and ["failure_pareto", "no answer", "1"] in rows
    assert ["station_yield", "S1", "3", "0", "1.0000"] in rows
    assert "no answer" in html_path.read_text()


def test_window_excludes_units_scanned_outside_it(database: Database, tmp_path: Path) -> None:
    seed(database, [("assigned", "S1", None)] * 5)  # scanned at T0 + 0..4 minutes
    csv_path, _ = write_shift_report(database, T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), tmp_path)
    assert ["units", "total", "2"] in list(csv.reader(csv_path.open()))


def test_bad_window_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "shift", "--since", "2026-12-03T10:00", "--until", "2026-12-03T09:00"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err


def test_scheduled_reports_run_at_every_boundary_and_stop(database: Database, tmp_path: Path) -> None:
    from pipeline.cli.report_run import schedule_shift_reports
    from pipeline.config import Settings

    settings = Settings(report_dir=str(tmp_path), shift_boundaries=("06:00", "18:30"))
    jobs = schedule_shift_reports(database, settings)
    try:
        runs = jobs.next_runs()
        assert [name for name, _ in runs] == ["shift-report", "shift-report"]
        assert sorted((t.hour, t.minute) for _, t in runs) == [(6, 0), (18, 30)]
        assert all(timedelta(0) < t - datetime.now(UTC) <= timedelta(days=1) for _, t in runs)
    finally:
        jobs.stop()
