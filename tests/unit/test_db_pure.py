"""Pure parts of pipeline.db: URL handling, the audit hash, chain verification over in-memory rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pipeline.db.audit_chain import canonical_json, record_hash, verify_rows
from pipeline.db.engine import mask_url, normalise_url
from pipeline.db.tables import GENESIS_HASH, AuditHeadRow, AuditRow

AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_postgres_urls_use_psycopg3_and_passwords_are_masked() -> None:
    assert normalise_url("postgresql://u:pw@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    masked = mask_url("postgresql://u:pw@h:5432/db")
    assert "pw" not in masked and "***" in masked


def test_canonical_json_is_order_independent() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, "é"]})
        == canonical_json({"a": [1, "é"], "b": 1})
        == '{"a":[1,"é"],"b":1}'
    )


def test_record_hash_is_zone_independent_and_chained() -> None:
    kwargs = {"id": 1, "kind": "k", "actor": "a", "registration_id": None, "detail_json": "{}"}
    plus2 = AT.astimezone(timezone(timedelta(hours=2)))
    assert record_hash(GENESIS_HASH, at=AT, **kwargs) == record_hash(GENESIS_HASH, at=plus2, **kwargs)  # type: ignore[arg-type]
    assert record_hash(GENESIS_HASH, at=AT, **kwargs) != record_hash("1" * 64, at=AT, **kwargs)  # type: ignore[arg-type]


def _chain(n: int) -> list[AuditRow]:
    rows, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        digest = record_hash(
            prev, id=i, at=AT, kind="k", actor="a", registration_id=None, detail_json='{"i":1}'
        )
        rows.append(
            AuditRow(
                id=i,
                at=AT,
                kind="k",
                actor="a",
                registration_id=None,
                detail='{"i":1}',
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    return rows


def test_verify_rows_accepts_a_good_chain_and_flags_the_first_bad_record() -> None:
    rows = _chain(4)
    head = AuditHeadRow(id=1, last_id=4, last_hash=rows[-1].hash)
    assert verify_rows(rows, head).ok
    rows[2].detail = '{"i":2}'
    report = verify_rows(rows, head)
    assert (report.ok, report.first_bad_id, report.checked) == (False, 3, 2)
    assert verify_rows([], AuditHeadRow(id=1, last_id=0, last_hash=GENESIS_HASH)).ok
    assert not verify_rows([], None).ok
