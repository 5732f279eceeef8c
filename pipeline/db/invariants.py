"""The database side of `edgeline audit check`: one read-only snapshot of what the invariants look at.

Responsible for: reading units, each unit's state-transition records, the unpublished outbox and the
audit chain verdict into plain frozen dataclasses (`pipeline.service.invariants.DbSnapshot`).
Not responsible for: judging them (pipeline.service.invariants) or asking DPS (pipeline.azure).
"""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import func, select

from pipeline.db.audit import verify_chain
from pipeline.db.session import Database
from pipeline.db.tables import AuditRow, OutboxRow, UnitRow
from pipeline.service.invariants import DbSnapshot, Transition, UnitFacts

BATCH = 1000


def load_snapshot(db: Database) -> DbSnapshot:
    """Read everything the invariant checker needs in one pass (audit records a batch at a time)."""
    chain = verify_chain(db)
    with db.snapshot_session() as session:  # units and their audit trail as of one moment
        units = [_facts(row) for row in session.scalars(select(UnitRow).order_by(UnitRow.id))]
        unpublished = session.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
        )
        transitions: dict[str, list[Transition]] = defaultdict(list)
        last = 0
        while True:
            query = (
                select(AuditRow.id, AuditRow.kind, AuditRow.registration_id, AuditRow.detail)
                .where(AuditRow.id > last, AuditRow.registration_id.is_not(None))
                .order_by(AuditRow.id)
                .limit(BATCH)
            )
            batch = session.execute(query).all()
            if not batch:
                break
            for record_id, kind, registration_id, detail in batch:
                transitions[registration_id].append(Transition(record_id, kind, _detail(detail)))
            last = batch[-1][0]
    return DbSnapshot(
        units=tuple(units),
        transitions={k: tuple(v) for k, v in transitions.items()},
        unpublished_outbox=int(unpublished or 0),
        chain_ok=chain.ok,
        chain_problem=None if chain.ok else f"record {chain.first_bad_id}: {chain.reason}",
    )


def _facts(row: UnitRow) -> UnitFacts:
    return UnitFacts(
        registration_id=row.registration_id,
        state=row.state,
        mode=row.mode,
        group_id=row.group_id,
        device_id=row.device_id,
        assigned_hub=row.assigned_hub,
        config_sha256=row.config_sha256,
        serial=row.serial,
        mac=row.mac,
    )


def _detail(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
