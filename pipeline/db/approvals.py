"""SQL implementation of the approval repository: one row per unit, the MES's latest decision."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.orm import Session

from pipeline.db.repositories import wrote
from pipeline.db.tables import UnitApprovalRow
from pipeline.domain.approval import ApprovalDecision
from pipeline.service.unit_of_work import ApprovalRepository


class SqlApprovalRepository(ApprovalRepository):
    """Decisions keyed by registration ID, inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, registration_id: str) -> ApprovalDecision | None:
        row = self._session.get(UnitApprovalRow, registration_id)
        if row is None:
            return None
        return ApprovalDecision(
            allowed=row.allowed,
            reason=row.reason,
            tags=json.loads(row.tags),
            iot_hub=row.iot_hub,
            source=row.source,
        )

    def put(self, registration_id: str, decision: ApprovalDecision, at: datetime) -> None:
        row = self._session.get(UnitApprovalRow, registration_id) or UnitApprovalRow(
            registration_id=registration_id
        )
        row.allowed = decision.allowed
        row.source = decision.source
        row.reason = decision.reason
        row.tags = json.dumps(decision.tags, sort_keys=True)
        row.iot_hub = decision.iot_hub
        row.decided_at = at
        self._session.add(row)
        wrote(self._session)
        self._session.flush()
