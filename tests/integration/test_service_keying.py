"""Keyer (pipeline.service.keying) on a real database: units, rework, quarantine, sealed keys."""

from __future__ import annotations

import pytest
import service_helpers
from service_helpers import World, deliver, envelope, new_identity, registration_id, scan

from pipeline.domain.events import FlashConfig, UnitKeyed, UnitQuarantined, UnitRefused
from pipeline.domain.model import UnitState
from pipeline.service.common import Rejected, device_key_context
from pipeline.service.keying import handle_scanned

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


def test_scan_creates_keyed_unit_and_outbox_event(world: World) -> None:
    ctx = world.context("individual")
    message = scan()
    deliver(ctx, handle_scanned, message)

    unit = world.unit(message.registration_id)
    assert unit.state is UnitState.KEYED
    assert (unit.serial, unit.station, unit.line) == (message.serial, "S1", "line1")
    assert unit.mac == message.mac.lower()
    keyed = world.outbox_of(UnitKeyed, message.registration_id)
    assert [(topic, m.mode) for topic, m in keyed] == [
        (f"{world.topic_root}/v1/units/events/unit.keyed", "individual")
    ]
    kinds = [r.kind for r in world.audit(message.registration_id)]
    assert kinds == ["unit.scanned", "unit.keyed"]


def test_a_group_mode_scan_is_keyed_enrolled_and_configured_in_one_step(world: World) -> None:
    """The group accepts every derived key: nothing to hand over on the bus between the three stages."""
    ctx = world.line_ready()
    message = scan()
    deliver(ctx, handle_scanned, message)

    unit = world.unit(message.registration_id)
    assert unit.state is UnitState.CONFIG_ISSUED
    assert [r.kind for r in world.audit(message.registration_id)] == [
        "unit.scanned",
        "unit.keyed",
        "unit.enrolled",
        "unit.config_issued",
    ]
    assert [type(env.message) for _, env in world.outbox()] == [FlashConfig]
    assert world.config_of(message.registration_id).registration_id == message.registration_id


def test_same_event_twice_is_one_unit_and_one_message(world: World) -> None:
    ctx = world.line_ready()
    env = envelope(scan())
    handle_scanned(ctx, env)
    handle_scanned(ctx, env)

    with world.db.uow() as uow:
        assert uow.units.count_by_state() == {"config_issued": 1}
    assert len(world.outbox()) == 1
    assert world.unit(env.message.registration_id).rework_count == 0  # type: ignore[attr-defined]


def test_rescan_is_rework_with_the_same_individual_key(world: World) -> None:
    ctx = world.context("individual")
    message = scan()
    deliver(ctx, handle_scanned, message)
    with world.db.uow() as uow:
        sealed_before = uow.keys.get(message.registration_id)
    assert sealed_before is not None

    deliver(ctx, handle_scanned, message)  # a new event id: the unit is scanned again

    unit = world.unit(message.registration_id)
    assert (unit.state, unit.rework_count) == (UnitState.KEYED, 1)
    with world.db.uow() as uow:
        assert uow.keys.get(message.registration_id) == sealed_before
        assert uow.units.count_by_state() == {"keyed": 1}
    assert len(world.outbox_of(UnitKeyed, message.registration_id)) == 2


def test_same_mac_on_another_serial_is_quarantined(world: World) -> None:
    ctx = world.line_ready()
    serial, mac = new_identity()
    first = scan(serial, mac)
    deliver(ctx, handle_scanned, first)
    other_serial, _ = new_identity()
    second = scan(other_serial, mac)
    deliver(ctx, handle_scanned, second)

    assert world.unit(first.registration_id).state is UnitState.CONFIG_ISSUED
    assert world.unit(second.registration_id).state is UnitState.QUARANTINED
    [(_, event)] = world.outbox_of(UnitQuarantined)
    assert event.registration_id == second.registration_id
    assert event.conflicting_registration_id == first.registration_id
    assert "identity conflict" in event.reason
    assert not world.outbox_of(FlashConfig, second.registration_id)


def test_conflict_is_found_when_the_new_unit_is_the_most_recent_match(world: World) -> None:
    # find_by_mac returns the most recently updated match: the new unit must not be able to find itself.
    ctx = world.line_ready()
    serial, mac = new_identity()
    first = scan(serial, mac)
    deliver(ctx, handle_scanned, first)
    world.clock.advance(seconds=60)
    other_serial, _ = new_identity()
    second = scan(other_serial, mac.replace(":", "-").upper())
    deliver(ctx, handle_scanned, second)

    assert world.unit(second.registration_id).state is UnitState.QUARANTINED
    assert world.unit(first.registration_id).state is UnitState.CONFIG_ISSUED


def test_quarantined_unit_is_not_restarted_by_a_rescan(world: World) -> None:
    ctx = world.context()
    serial, mac = new_identity()
    deliver(ctx, handle_scanned, scan(serial, mac))
    second = scan(new_identity()[0], mac)
    deliver(ctx, handle_scanned, second)
    deliver(ctx, handle_scanned, second)

    quarantined = world.unit(second.registration_id)
    assert quarantined.state is UnitState.QUARANTINED
    assert quarantined.failure is not None and "identity conflict" in quarantined.failure.reason
    assert "unit.rescan_refused" in [r.kind for r in world.audit(second.registration_id)]
    told = [m for _, m in world.outbox_of(UnitRefused, second.registration_id)]
    assert [m.kind for m in told] == ["quarantined", "quarantined"]  # the first scan, then the rescan
    assert all("identity conflict" in m.reason for m in told)


@pytest.mark.parametrize(
    "template, what", [("sn-{serial}", "does not match"), ("sn-{serial}-mac-{mac}", "does not match")]
)
def test_registration_id_not_built_from_serial_and_mac_is_refused_to_the_station(
    world: World, template: str, what: str
) -> None:
    ctx = world.context()
    serial, mac = new_identity()
    other = registration_id(*new_identity())
    wrong = registration_id(serial, mac, template) if template != "sn-{serial}-mac-{mac}" else other
    with pytest.raises(Rejected, match=what):  # refused to the station, and dead-lettered by the consumer
        handle_scanned(ctx, envelope(scan(serial, mac, rid=wrong)))

    with world.db.uow() as uow:
        assert uow.units.count_by_state() == {}
    [(topic, refused)] = world.outbox_of(UnitRefused)
    assert topic == f"{world.topic_root}/v1/lines/line1/stations/S1/commands/unit.refused"
    assert (refused.kind, refused.registration_id, refused.serial) == ("invalid", wrong, serial)
    assert what in refused.reason and "registration_id_template" in refused.reason
    assert [r.kind for r in world.audit()] == ["scan.refused"]


def test_bad_serial_is_refused_naming_the_character(world: World) -> None:
    ctx = world.context()
    _, mac = new_identity()
    message = scan("007_888", mac, rid="sn-007-888-mac-02-ed-00-00-00-01")
    with pytest.raises(Rejected, match="'_'"):
        handle_scanned(ctx, envelope(message))
    [(_, refused)] = world.outbox_of(UnitRefused)
    assert refused.kind == "invalid" and "'_'" in refused.reason


def test_individual_mode_stores_a_sealed_key_not_the_clear_key(world: World) -> None:
    ctx = world.context("individual")
    message = scan()
    deliver(ctx, handle_scanned, message)

    with world.db.uow() as uow:
        sealed = uow.keys.get(message.registration_id)
    assert sealed is not None
    key = ctx.sealer.unseal_key(sealed, context=device_key_context(message.registration_id))
    assert len(key.reveal()) == 64
    assert key.reveal() not in sealed
    assert key.reveal_base64().encode() not in sealed
    assert key.reveal_base64().rstrip("=").encode()[:16] not in sealed


def test_group_mode_stores_no_per_unit_key(world: World) -> None:
    ctx = world.context("group")
    message = scan()
    deliver(ctx, handle_scanned, message)
    with world.db.uow() as uow:
        assert uow.keys.get(message.registration_id) is None
    unit = world.unit(message.registration_id)
    assert unit.group_id == ctx.settings.group_id()
