"""`SqlGroupKeyHistory`: when a group's key was last rotated, and which units were configured before.

Responsible for: the two read queries behind `edgeline group rotate-key`'s safety check, on the audit
log (`group.key_rotated` records) and the units table (`config_issued_at`).
Not responsible for: deciding whether a rotation may go ahead (pipeline.service.groups) or writing
audit records (pipeline.db.audit_chain).
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select

from pipeline.db.session import Database
from pipeline.db.tables import AuditRow, UnitRow
from pipeline.domain.model import EnrollmentMode, UnitState
from pipeline.service.groups import ROTATED, GroupKeyHistory


class SqlGroupKeyHistory(GroupKeyHistory):
    """Answers from one database, each in its own short read transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def last_rotation(self, group_id: str) -> datetime | None:
        # Rotations are rare: scanning their records newest first is cheaper than a JSON index.
        query = (
            select(AuditRow.at, AuditRow.detail).where(AuditRow.kind == ROTATED).order_by(AuditRow.id.desc())
        )
        with self._db.session() as session:
            for at, detail in session.execute(query).tuples():
                if json.loads(detail).get("group_id") == group_id:
                    return at
        return None

    def units_configured_before(self, group_id: str, before: datetime) -> int:
        query = select(func.count()).where(
            UnitRow.mode == EnrollmentMode.GROUP.value,
            UnitRow.group_id == group_id,
            UnitRow.state != UnitState.REVOKED.value,
            UnitRow.config_issued_at < before,
        )
        with self._db.session() as session:
            return int(session.scalar(query) or 0)
