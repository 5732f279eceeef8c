"""Reconciler (scheduler job): re-drives units stuck between stages (architecture §6).

Messages can be lost (a broker dropping QoS 1 messages for a slow subscriber, a station that was away),
so the database, not the bus, decides what is pending: a unit that sat in a transient state longer than
`reconcile_stuck_seconds` gets the event that moves it on re-emitted (handlers are idempotent), and a
retryable failure is retried with backoff up to MAX_ATTEMPTS.
Not responsible for: flashed units (the confirmer owns them).
"""

from __future__ import annotations

from datetime import timedelta

from pipeline import metrics
from pipeline.domain.events import UnitEnrolled, UnitKeyed
from pipeline.domain.model import Unit, UnitState
from pipeline.service.common import audit, record_transition
from pipeline.service.configuring import issue_config
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "reconciler"
MAX_ATTEMPTS = 5
BATCH = 100
STUCK_STATES = (UnitState.KEYED, UnitState.ENROLLED, UnitState.CONFIG_ISSUED)
# Where a retryable failure restarts: the state before the stage that failed.
RETRY_FROM = {
    "approval": UnitState.SCANNED,
    "enroll": UnitState.KEYED,
    "config": UnitState.ENROLLED,
    "flash": UnitState.ENROLLED,
    "confirm": UnitState.FLASHED,
}


def reconcile(ctx: Context) -> int:
    """Re-drive stuck units and due retries; return how many were touched."""
    now = ctx.clock()
    stuck_for = timedelta(seconds=ctx.settings.reconcile_stuck_seconds)
    # Units waiting for the MES are asked again after commit (the approval runner reads the database).
    approvals: list[str] = []
    stuck_states = STUCK_STATES + ((UnitState.SCANNED,) if ctx.settings.approval_enabled() else ())
    with ctx.uow_factory() as uow:
        touched = 0
        for unit in uow.units.stuck(stuck_states, now - stuck_for, BATCH, claim=True):
            _redrive(uow, ctx, unit, approvals)
            touched += 1
        for unit in uow.units.stuck((UnitState.FAILED,), now - stuck_for, BATCH, claim=True):
            if _retry_due(ctx, unit, stuck_for):
                _retry(uow, ctx, unit, approvals)
                touched += 1
        uow.commit()
    ctx.notify_outbox()
    for registration_id in approvals:
        ctx.request_approval(registration_id)
    return touched


def _redrive(uow: UnitOfWork, ctx: Context, unit: Unit, approvals: list[str]) -> None:
    audit(uow, ctx, unit, "unit.redriven", ACTOR, state=unit.state.value)
    metrics.current().reconciler_redrive(unit.state.value)
    if unit.state is UnitState.CONFIG_ISSUED:
        issue_config(uow, ctx, unit)  # the station never answered: send the command again
        return
    unit.updated_at = ctx.clock()
    uow.units.save(unit)
    if unit.state is UnitState.SCANNED:  # waiting for the MES (approval on): ask it again
        approvals.append(unit.registration_id)
    _emit_next(uow, ctx, unit)


def _emit_next(uow: UnitOfWork, ctx: Context, unit: Unit) -> None:
    if unit.state is UnitState.KEYED:
        ctx.emit_unit_event(uow, UnitKeyed(registration_id=unit.registration_id, mode=unit.mode.value))
    elif unit.state is UnitState.ENROLLED:
        ctx.emit_unit_event(
            uow,
            UnitEnrolled(
                registration_id=unit.registration_id,
                mode=unit.mode.value,
                enrollment_id=unit.group_id or unit.registration_id,
            ),
        )


def _retry_due(ctx: Context, unit: Unit, stuck_for: timedelta) -> bool:
    failure = unit.failure
    if failure is None or not failure.retryable or failure.stage not in RETRY_FROM:
        return False
    if unit.attempts >= MAX_ATTEMPTS or unit.updated_at is None:
        return False
    return ctx.clock() - unit.updated_at >= stuck_for * float(2 ** max(unit.attempts - 1, 0))


def _retry(uow: UnitOfWork, ctx: Context, unit: Unit, approvals: list[str]) -> None:
    assert unit.failure is not None
    stage = unit.failure.stage
    unit.transition(RETRY_FROM[stage], ctx.clock())
    if unit.state is UnitState.FLASHED:
        unit.next_check_at = ctx.clock()
    record_transition(uow, ctx, unit, ACTOR, retry_of=stage, attempt=unit.attempts + 1)
    if unit.state is UnitState.SCANNED:
        approvals.append(unit.registration_id)
    _emit_next(uow, ctx, unit)
