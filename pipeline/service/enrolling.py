"""Enroller: makes DPS hold an enrollment that accepts the unit's key (architecture §3, §6).

Group mode: the product's enrollment group exists already (`ensure_group` at start-up) and accepts
every key derived from it, so a unit is enrolled as soon as it is keyed, and its config issued, in the
keyer's transaction (`enroll_in_group`): no `unit.keyed`/`unit.enrolled` hand-off on the bus, which
cost two bus round trips and two transactions per unit and carried no decision.
Individual mode: one enrollment per unit, created in bulk (up to 10 per DPS call) with every keyed unit
that is waiting, so a busy line spends one operation per ten units.
The DPS call happens outside any database transaction (a slow DPS must not hold database locks); the
state change is committed afterwards, and a replay re-PUTs the same key, which DPS treats as success.
Not responsible for: retry pacing against DPS (the DpsClient does it) or re-driving (the reconciler).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pipeline.azure.ports import AzureError, EnrollmentGroupSpec, IndividualEnrollmentSpec
from pipeline.bus.cloudevents import Envelope
from pipeline.domain.approval import ApprovalDecision
from pipeline.domain.events import UnitEnrolled, UnitKeyed
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import EnrollmentMode, Unit, UnitState
from pipeline.service.actors import qualified
from pipeline.service.common import device_key, fail_unit, finish, record_transition
from pipeline.service.configuring import issue_config
from pipeline.service.context import Context
from pipeline.service.unit_of_work import GroupRecord, UnitOfWork

ACTOR = "enroller"
BULK_LIMIT = 10  # DPS bulk operations take at most 10 enrollments (azure-notes §1.2)
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
log = logging.getLogger(__name__)


def handle_keyed(ctx: Context, envelope: Envelope) -> None:
    """Enroll the unit (and, in individual mode, up to 9 other waiting units in the same call)."""
    event = envelope.message
    assert isinstance(event, UnitKeyed)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        unit = uow.units.get(event.registration_id, for_update=True)
        if unit is None or unit.state is not UnitState.KEYED:
            finish(uow, ctx, envelope, ACTOR)  # stale or replayed: the unit moved on
            return
        if unit.mode is EnrollmentMode.GROUP:  # re-driven by the reconciler, or from an older worker
            enroll_in_group(uow, ctx, unit)
            finish(uow, ctx, envelope, ACTOR)
            return
        batch = _waiting_batch(uow, unit)
        specs = [
            _individual_spec(ctx, u, device_key(uow, ctx, u), uow.approvals.get(u.registration_id))
            for u in batch
        ]
    results = _enroll(ctx, specs)
    with ctx.uow_factory() as uow:
        for spec in specs:
            current = uow.units.get(spec.registration_id, for_update=True)
            if current is None or current.state is not UnitState.KEYED:
                continue
            error = results[spec.registration_id]
            if error is None:
                _mark_enrolled(uow, ctx, current, current.registration_id)
            else:
                fail_unit(
                    uow,
                    ctx,
                    current,
                    stage="enroll",
                    reason=_enroll_failure_reason(error),
                    retryable=error.retryable,
                    actor=ACTOR,
                )
        finish(uow, ctx, envelope, ACTOR)


def _waiting_batch(uow: UnitOfWork, unit: Unit) -> list[Unit]:
    """`unit` and up to 9 other keyed units to enroll in the same DPS call.

    The others are claimed (FOR UPDATE SKIP LOCKED): a unit another transaction holds, e.g. in another
    handler thread's batch, is left to that transaction instead of waited for, so two batches that
    each hold a unit the other wants cannot deadlock.
    """
    others = [
        u
        for u in uow.units.stuck((UnitState.KEYED,), FAR_FUTURE, BULK_LIMIT + 1, claim=True)
        if u.registration_id != unit.registration_id and u.mode is EnrollmentMode.INDIVIDUAL
    ]
    return [unit, *others[: BULK_LIMIT - 1]]


def _enroll(ctx: Context, specs: list[IndividualEnrollmentSpec]) -> dict[str, AzureError | None]:
    try:
        return ctx.dps.ensure_individual_enrollments(specs)
    except AzureError as exc:
        log.warning("DPS bulk enrollment of %d unit(s) failed: %s", len(specs), exc)
        return {s.registration_id: exc for s in specs}


def _enroll_failure_reason(error: AzureError) -> str:
    # The adapter's message names the call and the HTTP status, not the service: say it is DPS.
    retry = "; the reconciler will retry" if error.retryable else ""
    return f"DPS individual enrollment failed: {error}{retry}"


def _individual_spec(
    ctx: Context, unit: Unit, key: SecretKey, approval: ApprovalDecision | None
) -> IndividualEnrollmentSpec:
    # The secondary key equals the primary: edgeline flashes one key, and a distinct secondary that no
    # device knows would only be a second secret to protect. Rotation replaces both.
    hubs, policy = ctx.settings.iot_hubs, ctx.settings.allocation_policy if ctx.settings.iot_hubs else None
    if approval is not None and approval.iot_hub:  # the MES chose this unit's hub
        hubs, policy = (approval.iot_hub,), "static"
    return IndividualEnrollmentSpec(
        registration_id=unit.registration_id,
        primary_key=key,
        secondary_key=key,
        tags=unit_tags(unit, approval),
        iot_hubs=hubs,
        allocation_policy=policy,
    )


def unit_tags(unit: Unit, approval: ApprovalDecision | None = None) -> dict[str, str]:
    """Per-unit twin tags (initial twin in individual mode, twin patch after assignment in group mode).

    Extra tags from the MES's approval come first, so they can never overwrite edgeline's own.
    """
    tags = dict(approval.tags) if approval is not None else {}
    tags |= {
        "line": unit.line,
        "station": unit.station,
        "serial": unit.serial,
        "mac": unit.mac,
        "product": unit.product,
    }
    if unit.batch:
        tags["batch"] = unit.batch
    return tags


def enroll_in_group(uow: UnitOfWork, ctx: Context, unit: Unit) -> None:
    """Group mode: record the keyed unit enrolled in its group, then issue its config, all in `uow`."""
    _record_enrolled(uow, ctx, unit, unit.group_id or ctx.settings.group_id())
    issue_config(uow, ctx, unit)


def _mark_enrolled(uow: UnitOfWork, ctx: Context, unit: Unit, enrollment_id: str) -> None:
    _record_enrolled(uow, ctx, unit, enrollment_id)
    ctx.emit_unit_event(
        uow,
        UnitEnrolled(registration_id=unit.registration_id, mode=unit.mode.value, enrollment_id=enrollment_id),
    )


def _record_enrolled(uow: UnitOfWork, ctx: Context, unit: Unit, enrollment_id: str) -> None:
    unit.transition(UnitState.ENROLLED, ctx.clock())
    record_transition(uow, ctx, unit, ACTOR, enrollment_id=enrollment_id)


def ensure_group(ctx: Context) -> str:
    """Create the product's enrollment group keys if new (in the key store), and make DPS hold the group.

    A new key can be read once, for DPS; after DPS holds the group the store locks it (PKCS#11: the key
    becomes non-extractable), so from then on it only derives device keys.
    """
    group_id = ctx.settings.group_id()
    with ctx.uow_factory() as uow:
        record = uow.groups.get(group_id) or _create_group(uow, ctx, group_id)
        uow.commit()
    return _register_group(ctx, record)


def _create_group(uow: UnitOfWork, ctx: Context, group_id: str) -> GroupRecord:
    """New keys for the group; if another worker created it at the same moment, theirs."""
    store = ctx.group_key_store()
    candidate = GroupRecord(
        group_id=group_id,
        product=ctx.settings.product,
        created_at=ctx.clock(),
        sealed_primary_key=store.generate(group_id, "primary"),
        sealed_secondary_key=store.generate(group_id, "secondary"),
    )
    if not uow.groups.add_if_absent(candidate):
        for handle in (candidate.sealed_primary_key, candidate.sealed_secondary_key):
            store.discard(handle)
        existing = uow.groups.get(group_id)
        assert existing is not None, "add_if_absent found the group, so it exists"
        return existing
    detail = {
        "group_id": group_id,
        "key_store": store.name,
        "primary": store.fingerprint(candidate.sealed_primary_key, group_id, "primary"),
        "secondary": store.fingerprint(candidate.sealed_secondary_key, group_id, "secondary"),
    }
    actor = qualified(ACTOR, ctx.instance)
    uow.audit.append(at=ctx.clock(), kind="group.created", actor=actor, registration_id=None, detail=detail)
    return candidate


def _register_group(ctx: Context, record: GroupRecord) -> str:
    """Make DPS hold the group with the stored keys, then lock them in the key store."""
    from pipeline.service.group_keys import group_key_values

    store = ctx.group_key_store()
    group_id = record.group_id
    primary, secondary = group_key_values(ctx, record)
    ctx.dps.ensure_enrollment_group(
        EnrollmentGroupSpec(
            group_id=group_id,
            primary_key=primary,
            secondary_key=secondary,
            iot_hubs=ctx.settings.iot_hubs,
            allocation_policy=ctx.settings.allocation_policy if ctx.settings.iot_hubs else None,
        )
    )
    store.lock(record.sealed_primary_key)
    store.lock(record.sealed_secondary_key)
    return group_id
