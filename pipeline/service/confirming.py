"""Confirmer (scheduler job): asks DPS whether flashed units have registered, and records `assigned`.

A device may first boot days after it was flashed, so each unit is checked on its own backoff
(`confirm_backoff_initial_seconds`, doubling up to `confirm_backoff_max_seconds`) until
`confirm_window_hours` have passed, then it is failed as stale. In group mode, when many units are due,
the group's registration query (one operation per page) replaces one GET per unit (DESIGN §6).
Not responsible for: the device's own registration (the device does that with its key).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta

from pipeline.azure.ports import AzureError, RegistrationState
from pipeline.domain.events import UnitAssigned
from pipeline.domain.model import EnrollmentMode, Unit, UnitState
from pipeline.service.common import audit, fail_unit, record_transition
from pipeline.service.context import Context
from pipeline.service.enrolling import unit_tags
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "confirmer"
BATCH = 200
GROUP_QUERY_THRESHOLD = 10  # from this many due units on, one paged query beats one GET each
log = logging.getLogger(__name__)


def confirm_due_units(ctx: Context, on_assigned: Callable[[list[Unit]], object] | None = None) -> int:
    """Check every due unit once; return how many became `assigned`."""
    with ctx.uow_factory() as uow:
        due = uow.units.due_for_check(ctx.clock(), BATCH)
    if not due:
        return 0
    try:
        states = _registration_states(ctx, due)
    except AzureError as exc:
        log.warning(
            "confirmer: DPS registration lookup failed (%s); will retry %d unit(s) later", exc, len(due)
        )
        states = {}
    assigned: list[Unit] = []
    with ctx.uow_factory() as uow:
        uow.units.lock_many([u.registration_id for u in due])  # one round trip, not one per unit
        for stale in due:
            unit = uow.units.get(stale.registration_id, for_update=True)
            flashed = unit is not None and unit.state is UnitState.FLASHED
            if flashed and unit and _apply(uow, ctx, unit, states.get(unit.registration_id)):
                assigned.append(unit)
        uow.commit()
    ctx.notify_outbox()
    if assigned:
        (on_assigned or (lambda units: tag_twins(ctx, units)))(assigned)
    return len(assigned)


def _registration_states(ctx: Context, due: list[Unit]) -> dict[str, RegistrationState]:
    group_units = [u for u in due if u.mode is EnrollmentMode.GROUP]
    found: dict[str, RegistrationState] = {}
    if len(group_units) >= GROUP_QUERY_THRESHOLD:
        for group_id in {u.group_id or ctx.settings.group_id() for u in group_units}:
            found.update({s.registration_id: s for s in ctx.dps.query_group_registrations(group_id)})
        rest = [u for u in due if u.mode is not EnrollmentMode.GROUP]
    else:
        rest = due
    for unit in rest:
        state = ctx.dps.get_registration_state(unit.registration_id)
        if state is not None:
            found[unit.registration_id] = state
    return found


def _apply(uow: UnitOfWork, ctx: Context, unit: Unit, state: RegistrationState | None) -> bool:
    now = ctx.clock()
    if state is not None and state.status == "assigned" and state.assigned_hub:
        unit.device_id = state.device_id or unit.registration_id
        unit.assigned_hub = state.assigned_hub
        unit.next_check_at = None
        unit.transition(UnitState.ASSIGNED, now)
        record_transition(
            uow,
            ctx,
            unit,
            ACTOR,
            assigned_hub=unit.assigned_hub,
            device_id=unit.device_id,
            substatus=state.substatus,
        )
        ctx.emit_unit_event(
            uow,
            UnitAssigned(
                registration_id=unit.registration_id, assigned_hub=unit.assigned_hub, device_id=unit.device_id
            ),
        )
        return True
    if state is not None and state.status == "disabled":
        fail_unit(
            uow,
            ctx,
            unit,
            stage="confirm",
            retryable=False,
            actor=ACTOR,
            reason="DPS reports the enrollment disabled: enable it (`edgeline enrollment enable`) "
            "or revoke the unit",
        )
        return False
    flashed_at = unit.stage_times.get(UnitState.FLASHED.value, now)
    if now - flashed_at > timedelta(hours=ctx.settings.confirm_window_hours):
        detail = f" (last DPS status {state.status}: {state.error_message})" if state else ""
        fail_unit(
            uow,
            ctx,
            unit,
            stage="confirm",
            retryable=False,
            actor=ACTOR,
            reason=f"device did not register with DPS within {ctx.settings.confirm_window_hours:g} h of "
            f"flashing{detail}: check it is powered, online and has the flashed config",
        )
        return False
    unit.checks += 1
    unit.next_check_at = now + next_check_delay(ctx, unit.checks)
    uow.units.save(unit)
    return False


def next_check_delay(ctx: Context, checks: int) -> timedelta:
    """Capped exponential backoff with +-20 % jitter (so a batch flashed together spreads out)."""
    base = ctx.settings.confirm_backoff_initial_seconds * (2 ** min(checks, 30))
    seconds = min(base, ctx.settings.confirm_backoff_max_seconds) * random.uniform(0.8, 1.2)
    return timedelta(seconds=seconds)


def tag_twins(ctx: Context, assigned: list[Unit]) -> None:
    """Check each assigned unit's hub identity (exists, IoT Edge) and, in group mode, write its tags.

    Per-unit tags cannot live in a group's initial twin, so group-mode units get them on their twin now;
    individual-mode units had them in their enrollment's initial twin. The outcome is audited per unit
    (`hub.checked`); a failure here never changes the unit's state: DPS already assigned it.
    """
    if ctx.hub is None:
        return
    for unit in assigned:
        if unit.assigned_hub and unit.device_id:
            outcome = _check_in_hub(ctx, unit, unit.assigned_hub, unit.device_id)
            with ctx.uow_factory() as uow:
                audit(uow, ctx, unit, "hub.checked", ACTOR, hub=unit.assigned_hub, outcome=outcome)
                uow.commit()


def _check_in_hub(ctx: Context, unit: Unit, hub: str, device_id: str) -> str:
    assert ctx.hub is not None
    try:
        device = ctx.hub.get_device(hub, device_id)
        if device is None:
            return f"device {device_id} is missing from hub {hub}"
        if not device.iot_edge:
            return f"device {device_id} in hub {hub} is not an IoT Edge device: check the enrollment"
        if unit.mode is EnrollmentMode.GROUP:
            ctx.hub.update_twin_tags(hub, device_id, unit_tags(unit))
            return "ok: IoT Edge identity present, twin tagged"
        return "ok: IoT Edge identity present"
    except AzureError as exc:
        return f"failed: {exc}"
