"""Keyer: turns a scan into a unit with a key (DESIGN §2, §3).

Responsible for: creating or restarting (rework) the unit, detecting identity conflicts (quarantine),
generating and sealing individual keys. Group keys are derived on demand, never stored per unit.
Not responsible for: DPS (the enroller) or validating what the station did on the wire (the consumer).
"""

from __future__ import annotations

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import UnitKeyed, UnitQuarantined, UnitScanned
from pipeline.domain.identity import DeviceIdentity, IdentityError
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import EnrollmentMode, Unit, UnitState
from pipeline.service.actors import station_actor
from pipeline.service.common import Rejected, audit, device_key_context, finish, record_transition
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "keyer"


def checked_registration_id(ctx: Context, event: UnitScanned) -> DeviceIdentity:
    """Re-derive the registration ID from serial and MAC; a station with another template is refused."""
    try:
        identity = DeviceIdentity.parse(event.serial, event.mac)
        expected = identity.registration_id(ctx.settings.registration_id_template)
    except IdentityError as exc:
        raise Rejected(f"scan from station {event.station}: {exc}") from None
    if expected != event.registration_id:
        raise Rejected(
            f"scan from station {event.station}: registration ID {event.registration_id!r} does not match "
            f"{expected!r} built from serial and MAC; align registration_id_template on station and pipeline"
        )
    return identity


def handle_scanned(ctx: Context, envelope: Envelope) -> None:
    """Create or restart the unit and give it a key; conflicting identities are quarantined."""
    event = envelope.message
    assert isinstance(event, UnitScanned)
    identity = checked_registration_id(ctx, event)
    by = station_actor(event.station, event.port)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        unit = uow.units.get(event.registration_id, for_update=True)
        if unit is None:
            conflict = _conflicting_unit(uow, identity)
            unit = _new_unit(ctx, event, identity)
            unit.station_scanned_at = envelope.time  # the station's clock; scanned_at is our receipt
            uow.units.add(unit)
            record_transition(uow, ctx, unit, by, **_scan_detail(envelope, event))
            if conflict is not None:
                _quarantine(uow, ctx, unit, conflict)
                finish(uow, ctx, envelope, ACTOR)
                return
        elif unit.state in (UnitState.QUARANTINED, UnitState.REVOKED):
            audit(uow, ctx, unit, "unit.rescan_refused", ACTOR, state=unit.state.value, station=event.station)
            finish(uow, ctx, envelope, ACTOR)
            return
        else:
            _restart(ctx, unit, event)
            unit.station_scanned_at = envelope.time
            record_transition(uow, ctx, unit, by, **_scan_detail(envelope, event), rework=unit.rework_count)
        _give_key(uow, ctx, unit)
        finish(uow, ctx, envelope, ACTOR)


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
    """A known unit with this MAC or serial (asked before the new unit is added: it must not find itself)."""
    return uow.units.find_by_mac(identity.mac) or uow.units.find_by_serial(identity.serial)


def _quarantine(uow: UnitOfWork, ctx: Context, unit: Unit, other: Unit) -> None:
    reason = (
        f"identity conflict: serial {unit.serial} / MAC {unit.mac} overlaps unit "
        f"{other.registration_id} (serial {other.serial}, MAC {other.mac}); a human must decide"
    )
    unit.transition(UnitState.QUARANTINED, ctx.clock())
    record_transition(uow, ctx, unit, ACTOR, reason=reason, conflicting=other.registration_id)
    ctx.emit_unit_event(
        uow,
        UnitQuarantined(
            registration_id=unit.registration_id,
            reason=reason,
            conflicting_registration_id=other.registration_id,
        ),
    )


def _give_key(uow: UnitOfWork, ctx: Context, unit: Unit) -> None:
    if unit.mode is EnrollmentMode.INDIVIDUAL and uow.keys.get(unit.registration_id) is None:
        # Generated here, before any DPS call, so a replayed enrollment always PUTs the same key.
        sealed = ctx.sealer.seal_key(SecretKey.generate(), context=device_key_context(unit.registration_id))
        uow.keys.put(unit.registration_id, sealed)
    unit.transition(UnitState.KEYED, ctx.clock())
    record_transition(uow, ctx, unit, ACTOR, mode=unit.mode.value)
    ctx.emit_unit_event(uow, UnitKeyed(registration_id=unit.registration_id, mode=unit.mode.value))
