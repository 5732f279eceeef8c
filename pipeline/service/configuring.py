"""Configurer: renders a unit's IoT Edge config, sends it encrypted to its station (architecture §3, §4).

The rendered config holds the device key, so it exists in clear only in this function's memory: it is
encrypted to the station's X25519 public key before it enters the outbox, and only its SHA-256 is stored.
Not responsible for: writing the config to the device (the station) or checking the result (flashing).
"""

from __future__ import annotations

from pipeline.bus.cloudevents import Envelope
from pipeline.crypto.envelope import EnvelopeError, seal_for_station
from pipeline.domain.events import FlashConfig, UnitEnrolled
from pipeline.domain.model import Unit, UnitState
from pipeline.edgeconfig.model import EdgeConfigError
from pipeline.edgeconfig.render import ProvisioningConfig, render
from pipeline.service.common import (
    KeyUnavailable,
    device_key_with_origin,
    fail_unit,
    finish,
    record_transition,
)
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "configurer"


def handle_enrolled(ctx: Context, envelope: Envelope) -> None:
    """Issue the flash command for an enrolled unit."""
    event = envelope.message
    assert isinstance(event, UnitEnrolled)
    with ctx.uow_factory() as uow:
        if uow.processed.seen(envelope.id, ACTOR):
            return
        unit = uow.units.get(event.registration_id, for_update=True)
        if unit is not None and unit.state is UnitState.ENROLLED:
            issue_config(uow, ctx, unit)
        finish(uow, ctx, envelope, ACTOR)


def issue_config(uow: UnitOfWork, ctx: Context, unit: Unit) -> None:
    """Render, encrypt to the station and queue the FlashConfig command; fail the unit if impossible."""
    station = uow.stations.get(unit.station)
    if station is None:
        fail_unit(
            uow,
            ctx,
            unit,
            stage="config",
            retryable=True,
            actor=ACTOR,
            reason=f"station {unit.station!r} is not registered with the pipeline: run "
            f"`edgeline station add {unit.station} --public-key KEY` with the KEY `edgeline station init` "
            "printed",
        )
        return
    try:
        key, origin = device_key_with_origin(uow, ctx, unit)
    except KeyUnavailable as exc:
        fail_unit(uow, ctx, unit, stage="config", reason=str(exc), retryable=False, actor=ACTOR)
        return
    settings = ctx.settings
    try:
        rendered = render(
            ProvisioningConfig(
                global_endpoint=settings.dps_global_endpoint,
                id_scope=settings.dps_id_scope,
                registration_id=unit.registration_id,
                device_key=key,
                hostname=edge_hostname(settings.edge_hostname, settings.edge_version, unit.registration_id),
            ),
            settings.edge_version,
        )
        envelope = seal_for_station(
            station.public_key,
            rendered.content,
            station_name=station.name,
            registration_id=unit.registration_id,
        )
    except (EdgeConfigError, EnvelopeError) as exc:
        # A setting no config can be rendered from (or a bad station key) would otherwise escape as a
        # handler error: dead-lettered, re-driven by the reconciler forever, the unit never failed.
        fail_unit(
            uow,
            ctx,
            unit,
            stage="config",
            reason=f"cannot issue the config: {exc}",
            retryable=False,
            actor=ACTOR,
        )
        return
    unit.config_sha256 = rendered.sha256
    unit.key_store, unit.key_source, unit.key_fingerprint = origin.store, origin.source, origin.fingerprint
    unit.transition(UnitState.CONFIG_ISSUED, ctx.clock())
    record_transition(
        uow,
        ctx,
        unit,
        ACTOR,
        config_sha256=rendered.sha256,
        path=rendered.path,
        key_origin={"store": origin.store, "source": origin.source, "fingerprint": origin.fingerprint},
    )
    command = FlashConfig(
        registration_id=unit.registration_id,
        station=station.name,
        port=unit.port or "",
        config_path=rendered.path,
        config_sha256=rendered.sha256,
        envelope=envelope,
    )
    ctx.emit(uow, command, ctx.topics.station_command(station.line, station.name, FlashConfig.NAME))


def edge_hostname(template: str, edge_version: str, registration_id: str) -> str | None:
    """The device hostname to put in the config: required by IoT Edge 1.1, optional from 1.2 on.

    Default (empty template): none for 1.2+, the registration ID (cut to one 63-character DNS label) for 1.1.
    """
    if not template and edge_version != "1.1":
        return None
    name = (template or "{registration_id}").format(registration_id=registration_id)
    return name[:63].rstrip("-")
