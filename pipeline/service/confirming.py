"""Confirmer (scheduler job): asks DPS whether units have registered, and records what DPS says.

DPS is the truth about assignment: besides flashed units it polls `config_issued` units (their
`config.flashed` may have been lost), failed units that had a config (a failure may have been recorded
too early) and quarantined ones, and converges any unit DPS reports assigned to `assigned`, saying in the
audit what it converged from; a quarantined one stays quarantined, recorded once, for a human. A
reworked unit is converged only once flashed again: before that, DPS's assignment may be the previous
visit's.
A flashed unit waiting longer than `assignment_overdue_seconds` is flagged, audited and its station told.

A device may first boot days after it was flashed, so each unit is checked on its own backoff
(`confirm_backoff_initial_seconds`, doubling up to `confirm_backoff_max_seconds`) until
`confirm_window_hours` have passed, then it is failed as stale. In group mode the confirmer asks the
cheaper way: the group's registration query (one operation per page of 100) when at least as many units
are due as the group has pages, else one GET per due unit (architecture §6). The group's size is learned
from its last query (`GroupSizes`), so a group of a million registrations is not paged through to
confirm a handful of units: operations per confirmed unit stay at most one, whatever the group's size.
Not responsible for: the device's own registration (the device does that with its key).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline.azure.ports import AzureError, RegistrationState
from pipeline.domain.events import UnitAssigned
from pipeline.domain.model import EnrollmentMode, Unit, UnitState
from pipeline.service.common import audit, fail_unit, record_transition
from pipeline.service.context import Context
from pipeline.service.enrolling import unit_tags
from pipeline.service.notices import notify_station
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "confirmer"
BATCH = 200
GROUP_QUERY_THRESHOLD = 10  # below this many due units of a group, GETs even for a one-page group
PAGE_SIZE = 100  # registrations per page of the group query (x-ms-max-item-count)
log = logging.getLogger(__name__)


POLLED = (UnitState.CONFIG_ISSUED, UnitState.FLASHED, UnitState.FAILED, UnitState.QUARANTINED)


class GroupSizes(dict[str, int]):
    """Registrations each group had at its last query (kept by the caller between confirmer runs)."""

    def query_pays(self, group_id: str, due: int) -> bool:
        """True if one paged query of the group costs no more DPS operations than `due` GETs."""
        if due < GROUP_QUERY_THRESHOLD:
            return False
        known = self.get(group_id)
        return known is None or math.ceil(known / PAGE_SIZE) <= due  # unknown: one query learns it


def confirm_due_units(
    ctx: Context,
    on_assigned: Callable[[list[Unit]], object] | None = None,
    sizes: GroupSizes | None = None,
) -> int:
    """Check every due unit once; return how many became `assigned`.

    `sizes` carries what earlier runs learned of group sizes; without it every run may page the group.
    """
    now = ctx.clock()
    with ctx.uow_factory() as uow:
        due = uow.units.due_for_check(
            now,
            BATCH,
            settled_before=now - timedelta(seconds=ctx.settings.confirm_backoff_initial_seconds),
            window_start=now - timedelta(hours=ctx.settings.confirm_window_hours),
        )
    if not due:
        return 0
    states: dict[str, RegistrationState] | None
    try:
        states = _registration_states(ctx, due, GroupSizes() if sizes is None else sizes)
    except AzureError as exc:
        log.warning(
            "confirmer: DPS registration lookup failed (%s); will retry %d unit(s) later", exc, len(due)
        )
        states = None  # unknown: nothing is concluded from silence this time
    assigned: list[Unit] = []
    with ctx.uow_factory() as uow:
        uow.units.lock_many([u.registration_id for u in due])  # one round trip, not one per unit
        for stale in due:
            unit = uow.units.get(stale.registration_id, for_update=True)
            if unit and unit.state in POLLED and _apply(uow, ctx, unit, states):
                assigned.append(unit)
        uow.commit()
    ctx.notify_outbox()
    if assigned:
        (on_assigned or (lambda units: tag_twins(ctx, units)))(assigned)
    return len(assigned)


def _registration_states(ctx: Context, due: list[Unit], sizes: GroupSizes) -> dict[str, RegistrationState]:
    by_group: dict[str, list[Unit]] = {}
    rest: list[Unit] = []
    for unit in due:
        if unit.mode is EnrollmentMode.GROUP:
            by_group.setdefault(unit.group_id or ctx.settings.group_id(), []).append(unit)
        else:
            rest.append(unit)
    found: dict[str, RegistrationState] = {}
    for group_id, units in by_group.items():
        if sizes.query_pays(group_id, len(units)):
            states = ctx.dps.query_group_registrations(group_id, page_size=PAGE_SIZE)
            sizes[group_id] = len(states)
            found.update({s.registration_id: s for s in states})
        else:
            rest.extend(units)
    for unit in rest:
        state = ctx.dps.get_registration_state(unit.registration_id)
        if state is not None:
            found[unit.registration_id] = state
    return found


def _apply(uow: UnitOfWork, ctx: Context, unit: Unit, states: dict[str, RegistrationState] | None) -> bool:
    """Act on DPS's answer for one unit (`states` None: DPS could not be asked); True if now assigned."""
    now = ctx.clock()
    state = None if states is None else states.get(unit.registration_id)
    if state is not None and state.status == "assigned" and state.assigned_hub:
        if unit.state is UnitState.QUARANTINED:
            _hold_quarantined(uow, ctx, unit, state.assigned_hub)
            return False
        if unit.state is UnitState.FLASHED or not unit.rework_count:
            _assign(uow, ctx, unit, state)
            return True
        # A reworked unit not flashed in this visit: DPS's assignment may be the previous visit's and
        # proves nothing about this one. The station's verified flash (or its failure) decides.
    if unit.state is UnitState.FLASHED:
        if _fail_flashed(uow, ctx, unit, state):
            return False
        if states is not None:
            _flag_overdue(uow, ctx, unit, state)
    unit.checks += 1
    unit.next_check_at = now + next_check_delay(ctx, unit.checks)
    if unit.state is UnitState.FLASHED and unit.assignment_overdue_at is None:
        overdue_at = _flashed_at(ctx, unit) + timedelta(seconds=ctx.settings.assignment_overdue_seconds)
        unit.next_check_at = max(min(unit.next_check_at, overdue_at), now)  # flag it on time
    uow.units.save(unit)
    return False


def _assign(uow: UnitOfWork, ctx: Context, unit: Unit, state: RegistrationState) -> None:
    """Record what DPS says: assigned; from a stage other than `flashed`, say what was converged."""
    assert state.assigned_hub is not None
    now = ctx.clock()
    converged: str | None = None
    if unit.state is UnitState.FLASHED:
        unit.transition(UnitState.ASSIGNED, now)
    else:
        converged = unit.converge_assigned(now, f"DPS reports (hub {state.assigned_hub})")
    unit.device_id = state.device_id or unit.registration_id
    unit.assigned_hub = state.assigned_hub
    unit.next_check_at = None
    detail = {"converged": converged} if converged else {}
    record_transition(
        uow,
        ctx,
        unit,
        ACTOR,
        assigned_hub=unit.assigned_hub,
        device_id=unit.device_id,
        substatus=state.substatus,
        **detail,
    )
    ctx.emit_unit_event(
        uow,
        UnitAssigned(
            registration_id=unit.registration_id, assigned_hub=unit.assigned_hub, device_id=unit.device_id
        ),
    )
    notify_station(
        uow, ctx, unit, kind="assigned", reason=f"DPS assigned it to {unit.assigned_hub}", final=True
    )


def _hold_quarantined(uow: UnitOfWork, ctx: Context, unit: Unit, hub: str) -> None:
    """A quarantined unit stays quarantined (a human decides); record once what DPS says, stop asking."""
    audit(
        uow,
        ctx,
        unit,
        "unit.assigned_while_quarantined",
        ACTOR,
        assigned_hub=hub,
        reason="DPS reports it assigned; left quarantined for a human to decide (release or revoke)",
    )
    unit.next_check_at = ctx.clock() + timedelta(hours=ctx.settings.confirm_window_hours)
    uow.units.save(unit)


def _flashed_at(ctx: Context, unit: Unit) -> datetime:
    return unit.stage_times.get(UnitState.FLASHED.value, ctx.clock())


def _fail_flashed(uow: UnitOfWork, ctx: Context, unit: Unit, state: RegistrationState | None) -> bool:
    """Fail a flashed unit whose enrollment is disabled or that stayed silent past the window."""
    now = ctx.clock()
    if state is not None and state.status == "disabled":
        reason = (
            "DPS reports the enrollment disabled: enable it (`edgeline enrollment enable`) or revoke the unit"
        )
    elif now - _flashed_at(ctx, unit) > timedelta(hours=ctx.settings.confirm_window_hours):
        detail = f" (last DPS status {state.status}: {state.error_message})" if state else ""
        reason = (
            f"device did not register with DPS within {ctx.settings.confirm_window_hours:g} h of "
            f"flashing{detail}: check it is powered, online and has the flashed config"
        )
    else:
        return False
    unit.next_check_at = now + next_check_delay(ctx, unit.checks)  # keep asking: DPS may still assign it
    fail_unit(uow, ctx, unit, stage="confirm", retryable=False, actor=ACTOR, reason=reason)
    return True


def _flag_overdue(uow: UnitOfWork, ctx: Context, unit: Unit, state: RegistrationState | None) -> None:
    """Flag, audit and tell the station once when a flashed unit waits too long for assignment."""
    now = ctx.clock()
    waited = now - _flashed_at(ctx, unit)
    if (
        unit.assignment_overdue_at is not None
        or waited.total_seconds() < ctx.settings.assignment_overdue_seconds
    ):
        return
    if state is None:
        dps = "not registered"
    else:
        dps = state.status + (f" ({state.error_message})" if state.error_message else "")
    reason = (
        f"flashed {waited.total_seconds() / 60:.0f} min ago, DPS reports {dps}: "
        "check the device's network/DPS endpoint"
    )
    unit.assignment_overdue_at, unit.assignment_overdue_reason = now, reason
    audit(uow, ctx, unit, "unit.assignment_overdue", ACTOR, reason=reason)
    notify_station(uow, ctx, unit, kind="overdue", reason=reason, final=False)


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
            with ctx.uow_factory() as uow:
                approval = uow.approvals.get(unit.registration_id)
            ctx.hub.update_twin_tags(hub, device_id, unit_tags(unit, approval))
            return "ok: IoT Edge identity present, twin tagged"
        return "ok: IoT Edge identity present"
    except AzureError as exc:
        return f"failed: {exc}"
