"""Flash recorder: takes the station's word on a flash, only if it matches the issued config.

A `config.flashed` counts only if it comes from the unit's own station and carries the SHA-256 of the
config issued last; anything else (a late result for an older config, another station) is audited and
ignored. Not responsible for: verifying the device (the station reads back the hash before reporting).
"""

from __future__ import annotations

from datetime import timedelta

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import ConfigFlashed, FlashFailed, ScanRejected
from pipeline.domain.model import UnitState
from pipeline.service.common import audit, fail_unit, finish, record_transition
from pipeline.service.context import Context

ACTOR = "recorder"


def handle_flashed(ctx: Context, envelope: Envelope) -> None:
    """Mark the unit flashed and schedule its first DPS check."""
    event = envelope.message
    assert isinstance(event, ConfigFlashed)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        unit = uow.units.get(event.registration_id, for_update=True)
        if unit is None or unit.station != event.station:
            audit(uow, ctx, unit, "flash.ignored", event.station, reason="unit unknown or on another station")
        elif unit.state is UnitState.CONFIG_ISSUED and event.config_sha256 == unit.config_sha256:
            now = ctx.clock()
            unit.transition(UnitState.FLASHED, now)
            unit.checks = 0
            unit.next_check_at = now + timedelta(seconds=ctx.settings.confirm_backoff_initial_seconds)
            checked = {"edge_check": event.edge_check} if event.edge_check else {}  # edge: device-side checks
            record_transition(
                uow, ctx, unit, event.station, config_sha256=event.config_sha256, port=event.port, **checked
            )
        elif event.config_sha256 != unit.config_sha256:
            audit(uow, ctx, unit, "flash.ignored", event.station, reason="result for another config version")
        finish(uow, ctx, envelope, ACTOR)


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
                actor=event.station,
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
            event.station,
            port=event.port,
            reason=event.reason,
            raw_serial=event.raw_serial,
            raw_mac=event.raw_mac,
        )
        finish(uow, ctx, envelope, ACTOR)
