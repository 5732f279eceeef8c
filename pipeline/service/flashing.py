"""Flash recorder: takes the station's word on a flash, only if it matches the issued config.

A `config.flashed` counts only if it comes from the unit's own station and carries the SHA-256 of the
config issued last; anything else (a late result for an older config, another station) is audited and
ignored. A verified flash that arrives after the confirmer already took DPS's word that the unit is
assigned (the station's result was held up, e.g. by a broker outage) is still recorded, as
`flash.verified`, and its time becomes the unit's `flashed_at`: the audit keeps the station's read-back
of every config it issued.
Not responsible for: verifying the device (the station reads back the hash before reporting).
"""

from __future__ import annotations

from datetime import timedelta

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import ConfigFlashed, FlashFailed, ScanRejected
from pipeline.domain.model import Unit, UnitState
from pipeline.service.actors import station_actor
from pipeline.service.common import audit, fail_unit, finish, record_transition
from pipeline.service.context import Context
from pipeline.service.notices import acknowledge_flash
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "recorder"
AFTER_ASSIGNMENT = (UnitState.ASSIGNED, UnitState.ONLINE, UnitState.NOT_ONLINE)


def handle_flashed(ctx: Context, envelope: Envelope) -> None:
    """Mark the unit flashed, schedule its first DPS check, and acknowledge the event to the station.

    The acknowledgement (`flash.recorded`) leaves through the outbox, so only after this commit; a
    duplicate (the station re-sends until acknowledged) is acknowledged again and changes nothing else.
    """
    event = envelope.message
    assert isinstance(event, ConfigFlashed)
    by = station_actor(event.station, event.port)
    with ctx.uow_factory() as uow:
        unit = uow.units.get(event.registration_id, for_update=True)
        if uow.processed.seen(envelope.id, ACTOR):
            _acknowledge(uow, ctx, envelope, event, unit, "already recorded")
            uow.commit()
            ctx.notify_outbox()
            return
        if unit is None or unit.station != event.station:
            outcome = "ignored: unit unknown or on another station"
            audit(uow, ctx, unit, "flash.ignored", by, reason=outcome[9:])
        elif unit.state is UnitState.CONFIG_ISSUED and event.config_sha256 == unit.config_sha256:
            now = ctx.clock()
            unit.transition(UnitState.FLASHED, now)
            unit.checks = 0
            unit.next_check_at = now + timedelta(seconds=ctx.settings.confirm_backoff_initial_seconds)
            checked = {"edge_check": event.edge_check} if event.edge_check else {}  # device-side checks
            record_transition(
                uow, ctx, unit, by, config_sha256=event.config_sha256, port=event.port, **checked
            )
            outcome = "flashed"
        elif event.config_sha256 != unit.config_sha256:
            outcome = "ignored: result for another config version"
            audit(uow, ctx, unit, "flash.ignored", by, reason=outcome[9:])
        elif _assigned_before_its_flash(unit):
            unit.note_late_flash(envelope.time)
            uow.units.save(unit)
            checked = {"edge_check": event.edge_check} if event.edge_check else {}
            audit(uow, ctx, unit, "flash.verified", by, config_sha256=event.config_sha256, port=event.port,
                  after=unit.state.value, **checked)  # fmt: skip
            outcome = f"recorded: unit was already {unit.state.value} (DPS reported it first)"
        else:
            outcome = f"no change: unit is {unit.state.value}"
        _acknowledge(uow, ctx, envelope, event, unit, outcome)
        finish(uow, ctx, envelope, ACTOR)


def _assigned_before_its_flash(unit: Unit) -> bool:
    """The confirmer converged the unit on DPS's word after its last config was issued, and no verified
    flash of that config has been recorded yet (`note_late_flash` keeps its time at or after the issue)."""
    issued, flashed = unit.stage_times.get("config_issued"), unit.stage_times.get("flashed")
    return unit.state in AFTER_ASSIGNMENT and issued is not None and (flashed is None or flashed < issued)


def _acknowledge(
    uow: UnitOfWork, ctx: Context, envelope: Envelope, event: ConfigFlashed, unit: Unit | None, outcome: str
) -> None:
    acknowledge_flash(
        uow,
        ctx,
        line=unit.line if unit is not None and unit.station == event.station else ctx.settings.line,
        station=event.station,
        registration_id=event.registration_id,
        event_id=envelope.id,
        outcome=outcome,
    )


def handle_flash_failed(ctx: Context, envelope: Envelope) -> None:
    """Fail the unit at the flash stage with the station's reason."""
    event = envelope.message
    assert isinstance(event, FlashFailed)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        unit = uow.units.get(event.registration_id, for_update=True)
        if unit is not None and unit.station == event.station and unit.state is UnitState.CONFIG_ISSUED:
            fail_unit(
                uow,
                ctx,
                unit,
                stage="flash",
                reason=f"station {event.station} port {event.port}: {event.reason}",
                retryable=event.retryable,
                actor=station_actor(event.station, event.port),
            )
        finish(uow, ctx, envelope, ACTOR)


def handle_scan_rejected(ctx: Context, envelope: Envelope) -> None:
    """Keep a station's refused scan in the audit log (no unit exists for it)."""
    event = envelope.message
    assert isinstance(event, ScanRejected)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        audit(
            uow,
            ctx,
            None,
            "scan.rejected",
            station_actor(event.station, event.port),
            port=event.port,
            reason=event.reason,
            raw_serial=event.raw_serial,
            raw_mac=event.raw_mac,
        )
        finish(uow, ctx, envelope, ACTOR)
