"""Seeding a migrated database with units and chained audit records for the web tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.db.session import Database
from pipeline.db.tables import UnitRow

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
STAGES = ("scanned", "keyed", "enrolled", "config_issued", "flashed", "assigned")


@dataclass(frozen=True)
class Seeded:
    """What was seeded, for assertions."""

    registration_ids: list[str]
    states: dict[str, str]


def unit_row(i: int, *, state: str, station: str, reason: str | None = None) -> UnitRow:
    """A unit that went through the stages up to `state` one second apart, starting at T0 + i minutes."""
    start = T0 + timedelta(minutes=i)
    rid = f"sn-{i:06d}-mac-02-00-00-00-{i // 256:02x}-{i % 256:02x}"
    times = {}
    reached = STAGES[: STAGES.index(state) + 1] if state in STAGES else STAGES[:3]
    for k, stage in enumerate(reached):
        times[f"{stage}_at"] = start + timedelta(seconds=k)
    if state == "failed":
        times["failed_at"] = start + timedelta(seconds=5)
    last = max(times.values())
    return UnitRow(
        registration_id=rid,
        serial=f"{i:06d}",
        mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
        line="line1",
        station=station,
        port=f"/dev/ttyUSB{i % 2}",
        product="default",
        mode="group",
        state=state,
        failure_stage="flash" if state == "failed" else None,
        failure_reason=reason,
        attempts=0,
        rework_count=0,
        checks=0,
        created_at=start,
        updated_at=last,
        **times,
    )


def seed(db: Database, plan: list[tuple[str, str, str | None]]) -> Seeded:
    """Insert one unit per (state, station, reason) and one audit record per stage it reached."""
    rows = [unit_row(i, state=s, station=st, reason=r) for i, (s, st, r) in enumerate(plan)]
    with db.session() as session, session.begin():
        session.add_all(rows)
    with db.uow() as uow:
        for row in rows:
            for stage in (*STAGES, "failed"):
                at = getattr(row, f"{stage}_at")
                if at is not None:
                    uow.audit.append(
                        at=at,
                        kind=f"unit.{stage}",
                        actor="test",
                        registration_id=row.registration_id,
                        detail={"station": row.station},
                    )
        uow.commit()
    return Seeded([r.registration_id for r in rows], {r.registration_id: r.state for r in rows})
