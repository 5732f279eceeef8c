"""Audit log and audit queries: hash chain under concurrency, tamper detection, filters, CLI output."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.cli.main import main
from pipeline.db import audit
from pipeline.db.session import Database
from pipeline.db.tables import AuditRow
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def append(db: Database, n: int, actor: str = "test", registration_id: str | None = None) -> None:
    for i in range(n):
        with db.uow() as uow:
            uow.audit.append(
                at=T0 + timedelta(seconds=i),
                kind="note",
                actor=actor,
                registration_id=registration_id,
                detail={"i": i, "text": "é"},
            )
            uow.commit()


def test_chain_appends_and_verifies(database: Database) -> None:
    assert audit.verify_chain(database) == audit.ChainReport(True, 0, None, "ok")
    append(database, 5)
    report = audit.verify_chain(database)
    assert report.ok and report.checked == 5


def test_concurrent_appends_from_four_threads_stay_contiguous(database: Database) -> None:
    per_thread = 25
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            append(database, per_thread, actor=f"thread-{k}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    report = audit.verify_chain(database)
    assert report.ok, report.reason
    assert report.checked == 4 * per_thread
    ids = [r.id for r in audit.audit_records(database)]
    assert ids == list(range(1, 4 * per_thread + 1))


@pytest.mark.parametrize(
    "tamper",
    [
        'UPDATE audit_log SET detail = \'{"i":99,"text":"é"}\' WHERE id = 4',
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 4",
        "DELETE FROM audit_log WHERE id = 3",
    ],
)
def test_tampering_is_reported_at_first_bad_record(database: Database, tamper: str) -> None:
    append(database, 6)
    with database.engine.begin() as conn:
        conn.exec_driver_sql(tamper)
    report = audit.verify_chain(database)
    assert not report.ok
    assert report.first_bad_id == 4
    assert report.checked == 3 if "DELETE" not in tamper else report.checked == 2


def test_truncating_the_tail_is_detected(database: Database) -> None:
    append(database, 3)
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    report = audit.verify_chain(database)
    assert not report.ok and "audit_head" in report.reason


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_record_appended_while_the_chain_is_verified_is_not_a_break(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers keep writing during `audit verify`: the head and the log are read as of one moment."""
    append(database, 3)
    all_records = audit._all_records

    def records_after_an_append(session: Session) -> Iterator[AuditRow]:
        append(database, 1)  # another transaction commits after the head was read, before the log is
        yield from all_records(session)

    monkeypatch.setattr(audit, "_all_records", records_after_an_append)
    report = audit.verify_chain(database)
    assert report.ok and report.checked == 3, report
    monkeypatch.undo()
    assert audit.verify_chain(database).checked == 4


def test_secrets_in_detail_are_refused(database: Database) -> None:
    with database.uow() as uow, pytest.raises(ValueError, match="secrets"):
        uow.audit.append(
            at=T0, kind="keyed", actor="keyer", registration_id=None, detail={"symmetric_key": "x"}
        )


def _unit(n: int, line: str, station: str, state: UnitState, at: datetime) -> Unit:
    unit = Unit(
        f"sn-{n:03d}-mac-a1-b2-c3-d4-e5-{n:02x}",
        f"{n:03d}",
        f"a1:b2:c3:d4:e5:{n:02x}",
        line,
        station,
        EnrollmentMode.GROUP,
    )
    unit.transition(UnitState.SCANNED, at)
    if state is UnitState.FAILED:
        unit.fail(Failure("enroll", "DPS said 401: check the group key", False), at)
    elif state is UnitState.KEYED:
        unit.transition(UnitState.KEYED, at)
    return unit


def seed(db: Database) -> list[Unit]:
    units = [
        _unit(1, "line1", "S1", UnitState.KEYED, T0),
        _unit(2, "line1", "S2", UnitState.FAILED, T0 + timedelta(hours=1)),
        _unit(3, "line2", "S3", UnitState.SCANNED, T0 + timedelta(hours=2)),
    ]
    with db.uow() as uow:
        for unit in units:
            uow.units.add(unit)
            uow.audit.append(
                at=unit.updated_at or T0,
                kind="unit.scanned",
                actor=f"station/{unit.station}",
                registration_id=unit.registration_id,
                detail={"serial": unit.serial},
            )
        uow.audit.append(
            at=T0,
            kind="unit.keyed",
            actor="keyer",
            registration_id=units[0].registration_id,
            detail={"mode": "group"},
        )
        uow.commit()
    return units


def test_units_query_filters(database: Database) -> None:
    units = seed(database)
    ids = lambda views: [v.registration_id for v in views]  # noqa: E731
    assert ids(audit.units_query(database)) == [u.registration_id for u in units]
    assert ids(audit.units_query(database, line="line1")) == [
        units[0].registration_id,
        units[1].registration_id,
    ]
    assert ids(audit.units_query(database, station="S3")) == [units[2].registration_id]
    failed = audit.units_query(database, state="failed")
    assert ids(failed) == [units[1].registration_id]
    assert failed[0].failure_reason == "DPS said 401: check the group key"
    assert failed[0].stage_times["failed"] == T0 + timedelta(hours=1)
    window = audit.units_query(database, since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert ids(window) == [units[1].registration_id]
    assert len(audit.units_query(database, limit=2)) == 2


@pytest.mark.parametrize("key", ["sn-001-mac-a1-b2-c3-d4-e5-01", "001", "A1B2C3D4E501", "a1-b2-c3-d4-e5-01"])
def test_unit_timeline_by_any_key(database: Database, key: str) -> None:
    units = seed(database)
    timeline = audit.unit_timeline(database, key)
    assert timeline is not None
    assert timeline.unit.registration_id == units[0].registration_id
    assert [r.kind for r in timeline.records] == ["unit.scanned", "unit.keyed"]
    assert audit.unit_timeline(database, "nothing-like-it") is None


def test_cli_audit_units_json_and_csv(
    database: Database, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", db_url)
    assert main(["audit", "units", "--line", "line1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["serial"] for r in rows] == ["001", "002"]
    assert rows[1]["state"] == "failed" and rows[1]["failed_at"] == "2026-11-30T09:00:00+00:00"
    assert main(["audit", "units", "--state", "failed", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["serial"] for r in table] == ["002"]
    assert table[0]["failure_reason"].startswith("DPS said 401")
    assert main(["audit", "units", "--since", "2026-11-30T09:30:00"]) == 0
    assert "1 unit(s)" in capsys.readouterr().out


def test_cli_unit_verify_and_export(
    database: Database,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(database)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", db_url)
    assert main(["audit", "unit", "A1:B2:C3:D4:E5:01", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["records"]) == 2
    assert main(["audit", "unit", "unknown-unit"]) == 1
    assert main(["audit", "verify"]) == 0
    assert "4 record(s)" in capsys.readouterr().out
    out = tmp_path / "records.json"
    assert main(["audit", "export", "--what", "records", "--format", "json", "--output", str(out)]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == [1, 2, 3, 4]
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET kind = 'forged' WHERE id = 2"))
    assert main(["audit", "verify"]) == 1
    assert "record 2" in capsys.readouterr().err
