"""Keyer: turns a scan into a unit with a key (architecture §2, §3).

Responsible for: creating or restarting (rework) the unit, detecting identity conflicts (quarantine),
generating and sealing individual keys. Scans it will not act on (invalid identity, MAC rules, a
quarantined, revoked, assigned or other station's unit: pipeline.service.admission) are refused and
the scanning station is told, in the same transaction. Group keys are derived on demand, never stored
per unit.
Not responsible for: DPS (the enroller) or validating what the station did on the wire (the consumer).
"""

from __future__ import annotations

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import UnitKeyed, UnitQuarantined, UnitScanned
from pipeline.domain.identity import DeviceIdentity, IdentityError
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState
from pipeline.service.actors import station_actor
from pipeline.service.admission import refuse_scan, rescan_refusal
from pipeline.service.common import Rejected, audit, device_key_context, finish, record_transition
from pipeline.service.context import Context
from pipeline.service.enrolling import enroll_in_group
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "keyer"


def checked_identity(ctx: Context, event: UnitScanned) -> DeviceIdentity:
    """Re-derive the registration ID from serial and MAC under the MAC rules; raise IdentityError if bad."""
    identity = DeviceIdentity.parse(event.serial, event.mac, ctx.settings.mac_policy())
    expected = identity.registration_id(ctx.settings.registration_id_template)
    if expected != event.registration_id:
        raise IdentityError(
            f"registration ID {event.registration_id!r} does not match {expected!r} built from serial "
            "and MAC; align registration_id_template on station and pipeline"
        )
    return identity


def prepare_scans(uow: UnitOfWork, ctx: Context, envelopes: list[Envelope]) -> None:
    """Before a batch of scans: lock and read every valid identity they carry at once (the identity
    conflict check of each new unit then needs no round trip); invalid ones are left to the handler."""
    identities = []
    for envelope in envelopes:
        assert isinstance(envelope.message, UnitScanned)
        try:
            identity = checked_identity(ctx, envelope.message)
        except IdentityError:
            continue
        identities.append((identity.serial, identity.mac))
    uow.units.lock_identities(identities)


def handle_scanned(ctx: Context, envelope: Envelope) -> None:
    """Create or restart the unit and give it a key; refused scans and conflicts are told to the station."""
    event = envelope.message
    assert isinstance(event, UnitScanned)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        try:
            identity = checked_identity(ctx, event)
        except IdentityError as exc:  # untrusted input: the station may run other rules or be forged
            reason = f"scan from station {event.station}: {exc}"
            refuse_scan(uow, ctx, event, kind="invalid", reason=reason)
            finish(uow, ctx, envelope, ACTOR)
            raise Rejected(reason) from None  # committed; the consumer also dead-letters it, as before
        unit = uow.units.get(event.registration_id, for_update=True)
        needs_approval = False
        if unit is None:
            needs_approval = _admit_new(uow, ctx, envelope, identity)
        elif (refusal := rescan_refusal(unit, event, ctx.settings.rework_assigned)) is not None:
            refuse_scan(uow, ctx, event, kind=refusal[0], reason=refusal[1], unit=unit)
        else:
            released = unit.rework_released
            _restart(ctx, unit, event)
            unit.station_scanned_at = envelope.time
            by = station_actor(event.station, event.port)
            detail = _scan_detail(envelope, event)
            record_transition(uow, ctx, unit, by, **detail, rework=unit.rework_count, released=released)
            needs_approval = _key_or_ask(uow, ctx, unit)
        finish(uow, ctx, envelope, ACTOR)
    if needs_approval:
        ctx.request_approval(event.registration_id)  # after commit: the MES is asked off this thread


def _admit_new(uow: UnitOfWork, ctx: Context, envelope: Envelope, identity: DeviceIdentity) -> bool:
    """Create the unit; key it (or ask the MES), or quarantine it and tell the station if its identity
    conflicts. True if the MES must be asked."""
    event = envelope.message
    assert isinstance(event, UnitScanned)
    conflict = _conflicting_unit(uow, identity)
    unit = _new_unit(ctx, event, identity)
    unit.station_scanned_at = envelope.time  # the station's clock; scanned_at is our receipt
    uow.units.add(unit)
    record_transition(
        uow, ctx, unit, station_actor(event.station, event.port), **_scan_detail(envelope, event)
    )
    if conflict is None:
        return _key_or_ask(uow, ctx, unit)
    reason = _quarantine(uow, ctx, unit, conflict)
    refuse_scan(uow, ctx, event, kind="quarantined", reason=reason, unit=unit, audited=True)
    return False


def _key_or_ask(uow: UnitOfWork, ctx: Context, unit: Unit) -> bool:
    """Key the unit now, or (MES approval on) leave it `scanned` for the approval runner; True if asked."""
    if ctx.settings.approval_enabled():
        audit(uow, ctx, unit, "unit.approval_requested", ACTOR)
        return True
    give_key(uow, ctx, unit)
    return False


def _scan_detail(envelope: Envelope, event: UnitScanned) -> dict[str, str]:
    """Audit detail of a scan: where, and both times (the station's scan, the pipeline's receipt)."""
    return {"station": event.station, "port": event.port, "station_time": envelope.time.isoformat()}


def _new_unit(ctx: Context, event: UnitScanned, identity: DeviceIdentity) -> Unit:
    unit = Unit(
        registration_id=event.registration_id,
        serial=identity.serial,
        mac=identity.mac,
        line=event.line,
        station=event.station,
        port=event.port,
        product=event.product,
        batch=event.batch,
        mode=EnrollmentMode(ctx.settings.enrollment_mode),
        group_id=ctx.settings.group_id() if ctx.settings.enrollment_mode == "group" else None,
    )
    unit.transition(UnitState.SCANNED, ctx.clock())
    return unit


def _restart(ctx: Context, unit: Unit, event: UnitScanned) -> None:
    unit.rescan(ctx.clock())
    unit.line, unit.station, unit.port = event.line, event.station, event.port
    if event.batch is not None:
        unit.batch = event.batch


def _conflicting_unit(uow: UnitOfWork, identity: DeviceIdentity) -> Unit | None:
    """A known unit with this MAC or serial (asked before the new unit is added: it must not find itself).

    The identity lock makes the question and the insert one step across workers: two workers keying two
    different units that share a MAC (or a serial) at the same moment would otherwise both find nothing.
    """
    return uow.units.find_identity_conflict(identity.serial, identity.mac)


def _quarantine(uow: UnitOfWork, ctx: Context, unit: Unit, other: Unit) -> str:
    """Quarantine `unit`, keeping the reason on the unit itself (not only in the audit); return it."""
    reason = (
        f"identity conflict: serial {unit.serial} / MAC {unit.mac} overlaps unit "
        f"{other.registration_id} (serial {other.serial}, MAC {other.mac}); a human must decide"
    )
    unit.transition(UnitState.QUARANTINED, ctx.clock())
    unit.failure = Failure(stage="keying", reason=reason, retryable=False)
    record_transition(uow, ctx, unit, ACTOR, reason=reason, conflicting=other.registration_id)
    ctx.emit_unit_event(
        uow,
        UnitQuarantined(
            registration_id=unit.registration_id,
            reason=reason,
            conflicting_registration_id=other.registration_id,
        ),
    )
    return reason


def give_key(uow: UnitOfWork, ctx: Context, unit: Unit) -> None:
    """Generate and seal an individual key if needed, then move the unit to `keyed`.

    Group mode goes on in the same transaction (`enrolling.enroll_in_group`): the unit is enrolled and
    its config issued without a `unit.keyed` hand-off on the bus.
    """
    if unit.mode is EnrollmentMode.INDIVIDUAL and uow.keys.get(unit.registration_id) is None:
        # Generated here, before any DPS call, so a replayed enrollment always PUTs the same key.
        sealed = ctx.sealer.seal_key(SecretKey.generate(), context=device_key_context(unit.registration_id))
        uow.keys.put(unit.registration_id, sealed)
    unit.transition(UnitState.KEYED, ctx.clock())
    record_transition(uow, ctx, unit, ACTOR, mode=unit.mode.value)
    if unit.mode is EnrollmentMode.GROUP:
        enroll_in_group(uow, ctx, unit)
    else:
        ctx.emit_unit_event(uow, UnitKeyed(registration_id=unit.registration_id, mode=unit.mode.value))
