"""What the CLI shows: log lines above a live table, compact audit rows, the demo's own database file."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.cli.audit_run import stage_durations, units_table
from pipeline.cli.live_logs import logs_above
from pipeline.db.audit import UnitView
from pipeline.demo import DemoError, fresh_demo_database

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_log_records_print_above_the_live_table_and_handlers_come_back() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=80)
    root = logging.getLogger()
    before = root.handlers[:]
    with Live(Table("live"), console=console, auto_refresh=False), logs_above(console):
        assert len(root.handlers) == 1 and root.handlers[0] not in before
        logging.getLogger("pipeline.test").warning("broker is back")
    assert root.handlers == before
    assert "broker is back" in stream.getvalue()


def test_stage_durations_are_seconds_between_the_stages_reached() -> None:
    times: dict[str, datetime | None] = {
        "scanned": T0,
        "keyed": T0 + timedelta(seconds=0.25),
        "enrolled": T0 + timedelta(seconds=1.5),
        "config_issued": None,
        "flashed": T0 + timedelta(seconds=61.5),
        "assigned": T0 + timedelta(hours=2),
    }
    assert stage_durations(times) == "k0.2 e1.2 f60 a119m"
    assert stage_durations({"scanned": None}) == "-"


def _unit(reason: str) -> UnitView:
    return UnitView(
        registration_id="sn-demo1234abcd-mac-02-00-00-00-12-34",
        serial="DEMO1234ABCD",
        mac="02:00:00:00:12:34",
        line="line1",
        station="S1",
        product="default",
        batch=None,
        mode="group",
        state="failed",
        device_id=None,
        assigned_hub=None,
        failure_stage="enrolled",
        failure_reason=reason,
        attempts=3,
        rework_count=0,
        station_scanned_at=T0,
        assignment_overdue_at=None,
        assignment_overdue_reason=None,
        stage_times={"scanned": T0, "keyed": T0 + timedelta(seconds=1)},
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_units_table_fits_the_terminal_and_keeps_identity_and_state_whole(width: int) -> None:
    stream = io.StringIO()
    found = [_unit("DPS refused the enrollment: " + "x" * 200)]
    Console(file=stream, width=width).print(units_table(found, width))
    lines = stream.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    row = next(line for line in lines if "sn-demo1234abcd-mac-02-00-00-00-12-34" in line)
    assert " failed " in row and " S1 " in row and "k1.0" in row and "DPS" in row
    assert ("DEMO1234ABCD" in row) == (width >= 110)  # narrow: the serial is in the registration ID
    assert "x" * 40 not in stream.getvalue()


def test_the_demo_replaces_its_own_database_but_never_another(tmp_path: Path) -> None:
    url = fresh_demo_database(tmp_path, "run1")
    database = Path(url.removeprefix("sqlite:///"))
    assert database == (tmp_path / "edgeline.db").resolve() and not database.exists()
    database.write_text("previous demo")
    assert fresh_demo_database(tmp_path, "run2") == url and not database.exists()

    other = tmp_path / "line"
    other.mkdir()
    (other / "edgeline.db").write_text("a real line's units")
    with pytest.raises(DemoError, match="did not create"):
        fresh_demo_database(other, "run3")
    assert (other / "edgeline.db").read_text() == "a real line's units"
