"""The hash-chained audit log (architecture §7): appending and verifying.

Each record's hash is SHA-256 over the previous record's hash followed by the canonical JSON of the
record (id, at in UTC ISO 8601, kind, actor, registration_id, detail). Ids are assigned as
`audit_head.last_id + 1` while the single `audit_head` row is locked, so appends from any number of
processes are serialised and ids are contiguous: a deleted record is detectable too.

Responsible for: append (inside the caller's transaction) and chain verification.
Not responsible for: deciding what to audit (handlers), or redacting secrets beyond refusing obvious
key fields in `detail`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from pipeline.db.errors import AuditTampered
from pipeline.db.tables import GENESIS_HASH, AuditHeadRow, AuditRow
from pipeline.service.unit_of_work import AuditLog

FORBIDDEN_DETAIL_FIELDS = frozenset(
    {
        "key",
        "symmetric_key",
        "primary_key",
        "secondary_key",
        "device_key",
        "master_key",
        "password",
        "connection_string",
        "sas",
        "sas_token",
    }
)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(
    prev_hash: str,
    *,
    id: int,
    at: datetime,
    kind: str,
    actor: str,
    registration_id: str | None,
    detail_json: str,
) -> str:
    """The chained hash of one record."""
    body = canonical_json(
        {
            "id": id,
            "at": at.astimezone(UTC).isoformat(),
            "kind": kind,
            "actor": actor,
            "registration_id": registration_id,
            "detail": json.loads(detail_json),
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


class SqlAuditLog(AuditLog):
    """Append-only audit records in the caller's transaction, serialised on the audit_head row.

    Records are checked at `append` but chained at `flush_pending` (called by the unit of work right
    before commit), so the audit_head row lock is held for the end of a transaction only: concurrent
    handlers would otherwise queue behind each other for their whole transaction.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._pending: list[tuple[datetime, str, str, str | None, str]] = []

    def append(
        self, *, at: datetime, kind: str, actor: str, registration_id: str | None, detail: dict[str, Any]
    ) -> None:
        if at.tzinfo is None:
            raise ValueError(f"audit record {kind!r}: `at` must be timezone-aware")
        _refuse_secrets(kind, detail)
        self._pending.append((at, kind, actor, registration_id, canonical_json(detail)))

    def flush_pending(self) -> None:
        """Chain and insert the records appended in this transaction (takes the audit_head lock)."""
        if not self._pending:
            return
        head = self._lock_head()
        rows = [self._chained(head, *record) for record in self._pending]
        self._pending.clear()
        # One multi-row INSERT (Core, no ORM bookkeeping per record): a batch may carry hundreds.
        self._session.execute(insert(AuditRow), rows)
        self._session.flush()

    def discard_pending(self) -> None:
        """Forget records of a transaction that is rolled back."""
        self._pending.clear()

    def adopt(self, other: SqlAuditLog) -> None:
        """Take over the records `other` holds (a batch member committing into this transaction)."""
        self._pending.extend(other._pending)
        other._pending.clear()

    def _chained(
        self,
        head: AuditHeadRow,
        at: datetime,
        kind: str,
        actor: str,
        registration_id: str | None,
        detail_json: str,
    ) -> dict[str, Any]:
        new_id = head.last_id + 1
        digest = record_hash(
            head.last_hash,
            id=new_id,
            at=at,
            kind=kind,
            actor=actor,
            registration_id=registration_id,
            detail_json=detail_json,
        )
        row = {
            "id": new_id,
            "at": at,
            "kind": kind,
            "actor": actor,
            "registration_id": registration_id,
            "detail": detail_json,
            "prev_hash": head.last_hash,
            "hash": digest,
        }
        head.last_id, head.last_hash = new_id, digest
        return row

    def _lock_head(self) -> AuditHeadRow:
        query = (
            select(AuditHeadRow)
            .where(AuditHeadRow.id == 1)
            .with_for_update()  # PostgreSQL row lock; SQLite is already serialised by BEGIN IMMEDIATE
            .execution_options(populate_existing=True)
        )
        head = self._session.scalars(query).one_or_none()
        if head is None:
            raise AuditTampered(
                "audit_head row is missing: run `edgeline db upgrade` (or the log was tampered with)"
            )
        return head


def _refuse_secrets(kind: str, detail: dict[str, Any]) -> None:
    bad = sorted(k for k in detail if k.lower() in FORBIDDEN_DETAIL_FIELDS)
    if bad:
        raise ValueError(f"audit record {kind!r}: detail field(s) {bad} look like secrets and are refused")


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of verifying the audit chain."""

    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str


def verify_rows(rows: Iterable[AuditRow], head: AuditHeadRow | None) -> ChainReport:
    """Check contiguity, links and hashes of `rows` (in id order), then that the head points at the last."""
    prev_hash, expected_id, checked = GENESIS_HASH, 1, 0
    for row in rows:
        problem = _check_row(row, expected_id, prev_hash)
        if problem:
            return ChainReport(False, checked, row.id, problem)
        prev_hash, expected_id, checked = row.hash, row.id + 1, checked + 1
    if head is None:
        return ChainReport(False, checked, None, "audit_head row is missing")
    if head.last_id != expected_id - 1 or head.last_hash != prev_hash:
        bad = expected_id if head.last_id >= expected_id else None
        return ChainReport(
            False,
            checked,
            bad,
            f"audit_head points at record {head.last_id}, "
            f"the log ends at {expected_id - 1}: records were removed from the end or the head edited",
        )
    return ChainReport(True, checked, None, "ok")


def _check_row(row: AuditRow, expected_id: int, prev_hash: str) -> str | None:
    if row.id != expected_id:
        return f"record {expected_id} is missing (next record is {row.id})"
    if row.prev_hash != prev_hash:
        return f"record {row.id}: prev_hash does not match the hash of record {row.id - 1}"
    try:
        digest = record_hash(
            prev_hash,
            id=row.id,
            at=row.at,
            kind=row.kind,
            actor=row.actor,
            registration_id=row.registration_id,
            detail_json=row.detail,
        )
    except ValueError as exc:
        return f"record {row.id}: detail is not valid JSON ({exc})"
    if digest != row.hash:
        return f"record {row.id}: content does not match its hash (altered after it was written)"
    return None
