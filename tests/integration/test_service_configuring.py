"""Configurer (pipeline.service.configuring): the config is rendered, sealed to the station, never clear."""

from __future__ import annotations

import pytest
import service_helpers
import yaml
from service_helpers import World, deliver, to_enrolled

from pipeline.crypto.envelope import open_from_pipeline
from pipeline.domain.events import FlashConfig, UnitEnrolled, UnitFailed
from pipeline.domain.keys import derive_device_key
from pipeline.domain.model import UnitState
from pipeline.keystore.sealed import group_key_context
from pipeline.service.common import device_key_context
from pipeline.service.configuring import handle_enrolled
from pipeline.service.enrolling import ensure_group

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_enrolled_unit_gets_a_config_only_its_station_can_open(world: World, mode: str) -> None:
    ctx = world.context(mode)
    if mode == "group":
        ensure_group(ctx)
    world.add_station(ctx, "S1")
    rid = to_enrolled(ctx)

    deliver(ctx, handle_enrolled, UnitEnrolled(registration_id=rid, mode=mode, enrollment_id=rid))

    unit = world.unit(rid)
    assert unit.state is UnitState.CONFIG_ISSUED
    [(topic, command)] = world.outbox_of(FlashConfig, rid)
    assert topic == f"{world.topic_root}/v1/lines/line1/stations/S1/commands/flash.config"
    assert (command.station, command.port, command.config_path) == ("S1", unit.port, "/etc/aziot/config.toml")
    assert command.config_sha256 == unit.config_sha256

    parsed = world.config_of(rid)
    assert parsed.registration_id == rid
    assert parsed.id_scope == world.emulator.id_scope
    assert parsed.global_endpoint == world.emulator.device_endpoint
    with world.db.uow() as uow:
        if mode == "group":
            group = uow.groups.get(ctx.settings.group_id())
            assert group is not None
            group_key = ctx.sealer.unseal_key(
                group.sealed_primary_key, context=group_key_context(group.group_id, "primary")
            )
            expected = derive_device_key(group_key, rid)
        else:
            sealed = uow.keys.get(rid)
            assert sealed is not None
            expected = ctx.sealer.unseal_key(sealed, context=device_key_context(rid))
        items = uow.outbox.pending(1000)
    assert parsed.device_key == expected
    key_b64 = expected.reveal_base64().encode()
    for item in items:
        assert key_b64 not in item.payload
        assert key_b64.rstrip(b"=") not in item.payload
    assert all(key_b64.decode() not in str(r.detail) for r in world.audit())


def test_config_that_cannot_be_rendered_fails_the_unit(world: World) -> None:
    # A hostname template that renders to an invalid DNS name: the unit must fail with the renderer's
    # reason instead of the handler raising (dead-letter + endless re-drive).
    ctx = world.context("group", edge_version="1.1", edge_hostname="{registration_id}_bad")
    ensure_group(ctx)
    world.add_station(ctx, "S1")
    rid = to_enrolled(ctx)

    deliver(ctx, handle_enrolled, UnitEnrolled(registration_id=rid, mode="group", enrollment_id=rid))

    unit = world.unit(rid)
    assert unit.failure is not None
    assert (unit.state, unit.failure.stage, unit.failure.retryable) == (UnitState.FAILED, "config", False)
    assert "hostname" in unit.failure.reason
    assert not world.outbox_of(FlashConfig)


def test_iot_edge_1_1_config_gets_the_registration_id_as_hostname(world: World) -> None:
    ctx = world.context("group", edge_version="1.1")
    ensure_group(ctx)
    keypair = world.add_station(ctx, "S1")
    rid = to_enrolled(ctx)

    deliver(ctx, handle_enrolled, UnitEnrolled(registration_id=rid, mode="group", enrollment_id=rid))

    ((_, command),) = world.outbox_of(FlashConfig)
    assert command.config_path == "/etc/iotedge/config.yaml"
    content = open_from_pipeline(keypair, command.envelope, station_name="S1", registration_id=rid)
    assert yaml.safe_load(content)["hostname"] == rid[:63].rstrip("-")


def test_unregistered_station_fails_the_unit_at_config(world: World) -> None:
    ctx = world.context("group")
    ensure_group(ctx)
    rid = to_enrolled(ctx)

    deliver(ctx, handle_enrolled, UnitEnrolled(registration_id=rid, mode="group", enrollment_id=rid))

    unit = world.unit(rid)
    assert unit.state is UnitState.FAILED
    assert unit.failure is not None
    assert unit.failure.stage == "config"
    assert "edgeline station add S1" in unit.failure.reason
    assert not world.outbox_of(FlashConfig)
    [(_, failed)] = world.outbox_of(UnitFailed, rid)
    assert failed.stage == "config"


def test_group_key_missing_fails_the_unit_without_retry(world: World) -> None:
    ctx = world.context("group")  # ensure_group never ran: no group key in the database
    world.add_station(ctx, "S1")
    rid = to_enrolled(ctx)

    deliver(ctx, handle_enrolled, UnitEnrolled(registration_id=rid, mode="group", enrollment_id=rid))

    unit = world.unit(rid)
    assert unit.failure is not None
    assert (unit.state, unit.failure.stage, unit.failure.retryable) == (UnitState.FAILED, "config", False)
    assert "edgeline up" in unit.failure.reason


def test_stale_enrolled_event_for_a_configured_unit_is_ignored(world: World) -> None:
    ctx = world.context("group")
    ensure_group(ctx)
    world.add_station(ctx, "S1")
    rid = to_enrolled(ctx)
    event = UnitEnrolled(registration_id=rid, mode="group", enrollment_id=rid)
    deliver(ctx, handle_enrolled, event)
    sha = world.unit(rid).config_sha256

    deliver(ctx, handle_enrolled, event)  # a duplicate published under a new id (e.g. reconciler race)

    assert world.unit(rid).config_sha256 == sha
    assert len(world.outbox_of(FlashConfig, rid)) == 1
