"""Revoking and restoring one unit's DPS enrollment (architecture §2 `revoked`, azure-notes §2.3, §2.7).

Individual mode: disable = the enrollment's provisioningStatus set `disabled` (keys kept, so enabling
restores the same device key); delete = the enrollment removed (permanent). Group mode: a device cannot
be disabled inside its group, so edgeline creates a *disabled individual enrollment* for its
registration ID, which takes precedence over the group (azure-notes §2.3). Its keys are fresh random ones,
never the derived device key: the enrollment exists only to say no, and the device's token (signed with
the derived key) is then refused with 401 instead of `disabled`. Deleting that enrollment would let the
device re-enroll through the group, so `delete` is refused in group mode and `enable` removes it.

Unit states: disable and delete move the unit to `revoked`. Enable is the human release the state
machine asks for: `revoked -> scanned`, after which the unit must be rescanned at a station (rework) to
go through the line again. DPS is changed first, then the unit's IoT Hub device identity (azure-notes §2.7:
disabled by disable/delete, enabled by enable; only for a unit DPS assigned, and only when a hub
registry is configured), then the database, with one audit record saying what happened in each. A hub
failure does not undo the DPS change (which is what stops re-provisioning); it is audited and reported
in the Outcome, and re-running the command (idempotent) retries it.
Not responsible for: argument parsing or printing (pipeline.cli.enrollment_cmd), or HTTP/SDK calls
(the DpsClient and HubRegistry adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.azure.ports import AzureError, EnrollmentInfo, IndividualEnrollmentSpec, RegistrationState
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import EnrollmentMode, Unit, UnitState
from pipeline.service.common import audit, record_transition
from pipeline.service.context import Context

ACTOR = "operator"
MARKER_TAG = "edgeline"  # initial-twin tag marking a group-mode revocation enrollment as edgeline's
MARKER_VALUE = "revocation"


class RevocationError(RuntimeError):
    """A revocation command that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class EnrollmentView:
    """A unit, its individual enrollment in DPS (if any) and its registration state."""

    unit: Unit
    group_id: str | None
    enrollment: EnrollmentInfo | None
    registration: RegistrationState | None

    @property
    def revoked_in_group(self) -> bool:
        """Whether a disabled individual enrollment overrides the unit's group."""
        return self.group_id is not None and self.enrollment is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did, for the operator."""

    registration_id: str
    dps: str
    unit_state: str
    hub: str | None = None  # None: no hub step (never assigned, or no hub registry configured)
    hub_failed: bool = False


def show_enrollment(ctx: Context, registration_id: str) -> EnrollmentView:
    """The unit's database record with its DPS enrollment and registration state."""
    unit = _unit(ctx, registration_id)
    return EnrollmentView(
        unit=unit,
        group_id=_group_of(ctx, unit),
        enrollment=ctx.dps.get_individual_enrollment(registration_id),
        registration=ctx.dps.get_registration_state(registration_id),
    )


def disable_enrollment(ctx: Context, registration_id: str, reason: str = "") -> Outcome:
    """Revoke: the device can no longer provision, and the unit becomes `revoked`."""
    unit = _unit(ctx, registration_id)
    group_id = _group_of(ctx, unit)
    if group_id is None:
        dps = _disable_individual(ctx, registration_id)
    else:
        dps = _override_group(ctx, registration_id)
    hub = _set_hub_status(ctx, unit, enabled=False, reason=reason)
    return _record(ctx, registration_id, "enrollment.disabled", dps, hub, UnitState.REVOKED, reason=reason)


def enable_enrollment(ctx: Context, registration_id: str) -> Outcome:
    """Undo a revocation in DPS and release the unit (`revoked -> scanned`) for a rescan."""
    unit = _unit(ctx, registration_id)
    group_id = _group_of(ctx, unit)
    existing = ctx.dps.get_individual_enrollment(registration_id)
    if group_id is not None:
        dps = _remove_override(ctx, registration_id, existing)
    elif existing is None:
        dps = "no individual enrollment (deleted): a rescan re-creates it"
    else:
        ctx.dps.set_individual_enrollment_status(registration_id, "enabled")
        dps = "individual enrollment enabled"
    hub = _set_hub_status(ctx, unit, enabled=True)
    return _record(ctx, registration_id, "enrollment.enabled", dps, hub, UnitState.SCANNED)


def delete_enrollment(ctx: Context, registration_id: str, reason: str = "") -> Outcome:
    """Delete the individual enrollment (individual mode only) and mark the unit `revoked`."""
    unit = _unit(ctx, registration_id)
    group_id = _group_of(ctx, unit)
    if group_id is not None:
        raise RevocationError(
            f"unit {registration_id} provisions through enrollment group {group_id!r}: deleting its "
            "enrollment would let the device re-enroll through the group; use `edgeline enrollment "
            "disable` (a disabled individual enrollment overrides the group)"
        )
    ctx.dps.delete_individual_enrollment(registration_id)
    dps = "individual enrollment deleted"
    hub = _set_hub_status(ctx, unit, enabled=False, reason=reason)
    return _record(ctx, registration_id, "enrollment.deleted", dps, hub, UnitState.REVOKED, reason=reason)


def _disable_individual(ctx: Context, registration_id: str) -> str:
    if ctx.dps.get_individual_enrollment(registration_id) is None:
        return "no individual enrollment in DPS (not enrolled yet)"
    ctx.dps.set_individual_enrollment_status(registration_id, "disabled")
    return "individual enrollment disabled"


def _override_group(ctx: Context, registration_id: str) -> str:
    """Make a disabled individual enrollment for the ID exist (it takes precedence over the group)."""
    if ctx.dps.get_individual_enrollment(registration_id) is not None:
        ctx.dps.set_individual_enrollment_status(registration_id, "disabled")
        return "existing individual enrollment disabled (it overrides the group)"
    spec = IndividualEnrollmentSpec(
        registration_id=registration_id,
        primary_key=SecretKey.generate(),  # never the derived key: this enrollment must let nobody in
        secondary_key=SecretKey.generate(),
        tags={MARKER_TAG: MARKER_VALUE},
        provisioning_status="disabled",
    )
    error = ctx.dps.ensure_individual_enrollments([spec])[registration_id]
    if error is not None:
        raise error
    return "disabled individual enrollment created (it overrides the group)"


def _remove_override(ctx: Context, registration_id: str, existing: EnrollmentInfo | None) -> str:
    if existing is None:
        return "no overriding individual enrollment: the group already accepts the device"
    tags = (existing.raw.get("initialTwin") or {}).get("tags") or {}
    if tags.get(MARKER_TAG) != MARKER_VALUE:
        raise RevocationError(
            f"unit {registration_id}: the individual enrollment overriding its group was not made by "
            "`edgeline enrollment disable`; edgeline leaves it alone (remove it in DPS if intended)"
        )
    ctx.dps.delete_individual_enrollment(registration_id)
    return "overriding disabled individual enrollment deleted: the group accepts the device again"


@dataclass(frozen=True, slots=True)
class _HubStep:
    text: str
    failed: bool = False


def _set_hub_status(ctx: Context, unit: Unit, *, enabled: bool, reason: str = "") -> _HubStep | None:
    """Enable or disable the unit's hub identity; report (never raise) an IoT Hub failure."""
    if ctx.hub is None or not (unit.assigned_hub and unit.device_id):
        return None
    status = "enabled" if enabled else "disabled"
    where = f"device {unit.device_id} in {unit.assigned_hub}"
    try:
        found = ctx.hub.set_device_status(unit.assigned_hub, unit.device_id, enabled=enabled, reason=reason)
    except AzureError as exc:
        return _HubStep(f"could not set {where} {status}: {exc}", failed=True)
    return _HubStep(f"{where} {status}" if found else f"{where} not found (nothing to set {status})")


def _record(
    ctx: Context,
    registration_id: str,
    kind: str,
    dps: str,
    hub: _HubStep | None,
    target: UnitState,
    **detail: str,
) -> Outcome:
    """Audit the DPS and hub actions and move the unit to `target` (if it is not there and may go there)."""
    hub_detail = {} if hub is None else {"hub": hub.text, "hub_failed": hub.failed}
    with ctx.uow_factory() as uow:
        unit = uow.units.get(registration_id, for_update=True)
        if unit is None:
            raise RevocationError(f"unit {registration_id} disappeared from the database; DPS: {dps}")
        audit(uow, ctx, unit, kind, ACTOR, dps=dps, **hub_detail, **detail)
        moved = _move(unit, target, ctx)
        if moved:
            record_transition(uow, ctx, unit, ACTOR, by=kind, **detail)
        uow.commit()
    if hub is None:
        return Outcome(registration_id, dps, unit.state.value)
    return Outcome(registration_id, dps, unit.state.value, hub.text, hub.failed)


def _move(unit: Unit, target: UnitState, ctx: Context) -> bool:
    if unit.state is target:
        return False
    if target is UnitState.SCANNED and unit.state is not UnitState.REVOKED:
        return False  # enabling a unit that was never revoked in edgeline leaves its state alone
    unit.transition(target, ctx.clock())
    return True


def _unit(ctx: Context, registration_id: str) -> Unit:
    with ctx.uow_factory() as uow:
        unit = uow.units.get(registration_id)
    if unit is None:
        raise RevocationError(
            f"unit {registration_id!r} is not in the database: check the registration ID "
            "(`edgeline audit unit SERIAL|MAC` finds it)"
        )
    return unit


def _group_of(ctx: Context, unit: Unit) -> str | None:
    if unit.mode is EnrollmentMode.GROUP:
        return unit.group_id or ctx.settings.group_id()
    return None
