"""Keyer admission rules (issue #11): takeover, replay, cross-station/line scans, release, MAC rules.

Real parts: a migrated SQLite/PostgreSQL database, the DPS emulator over HTTP, real station envelopes.
"""

from __future__ import annotations

import base64
import getpass
import os
import re
import socket

import pytest
import service_helpers
from service_helpers import World, deliver, new_identity, scan, to_config_issued, to_flashed

from pipeline.cli.main import main
from pipeline.domain.events import FlashConfig, UnitKeyed, UnitRefused, UnitScanned
from pipeline.domain.model import UnitState
from pipeline.service.common import Rejected
from pipeline.service.context import Context
from pipeline.service.keying import handle_scanned
from pipeline.service.release import ReleaseError, release_for_rework

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


def assigned_unit(world: World, ctx: Context, first: UnitScanned) -> str:
    """Drive `first` to `flashed` through the handlers, then record DPS's `assigned` on the unit."""
    rid = to_flashed(world, ctx, first)
    with world.db.uow() as uow:
        unit = uow.units.get(rid, for_update=True)
        assert unit is not None
        unit.transition(UnitState.ASSIGNED, world.clock())
        uow.units.save(unit)
        uow.commit()
    return rid


def refusals(world: World, station: str) -> list[UnitRefused]:
    topic_end = f"/stations/{station}/commands/unit.refused"
    return [m for topic, m in world.outbox_of(UnitRefused) if topic.endswith(topic_end)]


def test_another_station_cannot_take_over_an_assigned_unit(world: World) -> None:
    ctx = world.context("individual")
    world.add_station(ctx, "S1")
    world.add_station(ctx, "S2")
    serial, mac = new_identity()
    rid = assigned_unit(world, ctx, scan(serial, mac, station="S1"))
    configs_before = len(world.outbox_of(FlashConfig, rid))

    deliver(ctx, handle_scanned, scan(serial, mac, station="S2"), source="edgeline/stations/S2")

    unit = world.unit(rid)
    assert (unit.state, unit.station, unit.rework_count) == (UnitState.ASSIGNED, "S1", 0)
    assert len(world.outbox_of(FlashConfig, rid)) == configs_before
    assert len(world.outbox_of(UnitKeyed, rid)) == 1
    [told] = refusals(world, "S2")
    assert (told.kind, told.registration_id, told.port) == ("refused", rid, "/dev/ttyUSB0")
    assert "already assigned" in told.reason and "edgeline unit release" in told.reason
    [record] = [r for r in world.audit(rid) if r.kind == "unit.rescan_refused"]
    assert record.actor == "station:S2:/dev/ttyUSB0"
    assert record.detail["owner"] == "line1/S1"


def test_a_replayed_scan_with_a_new_event_id_does_not_rework_an_assigned_unit(world: World) -> None:
    ctx = world.context("individual")
    world.add_station(ctx, "S1")
    captured = scan(station="S1")
    rid = assigned_unit(world, ctx, captured)

    deliver(ctx, handle_scanned, captured)  # same data, fresh CloudEvents id

    assert world.unit(rid).state is UnitState.ASSIGNED
    assert [m.kind for m in refusals(world, "S1")] == ["refused"]
    assert len(world.outbox_of(UnitKeyed, rid)) == 1


def test_rework_assigned_allow_lets_only_the_owning_station_rework(world: World) -> None:
    ctx = world.context("individual", rework_assigned="allow")
    world.add_station(ctx, "S1")
    serial, mac = new_identity()
    rid = assigned_unit(world, ctx, scan(serial, mac, station="S1"))

    deliver(ctx, handle_scanned, scan(serial, mac, station="S2"), source="edgeline/stations/S2")
    assert world.unit(rid).state is UnitState.ASSIGNED
    deliver(ctx, handle_scanned, scan(serial, mac, station="S1"))

    unit = world.unit(rid)
    assert (unit.state, unit.rework_count) == (UnitState.KEYED, 1)
    assert [m.kind for m in refusals(world, "S2")] == ["refused"]
    assert refusals(world, "S1") == []


@pytest.mark.parametrize("station, line", [("S2", "line1"), ("S1", "line2")], ids=["station", "line"])
def test_a_unit_in_flight_is_refused_to_another_station_or_line(
    world: World, station: str, line: str
) -> None:
    ctx = world.context("individual")
    world.add_station(ctx, "S1")
    serial, mac = new_identity()
    rid = to_config_issued(ctx, scan(serial, mac, station="S1"))

    deliver(ctx, handle_scanned, scan(serial, mac, station=station, line=line))

    unit = world.unit(rid)
    assert (unit.state, unit.station, unit.line) == (UnitState.CONFIG_ISSUED, "S1", "line1")
    [(topic, told)] = world.outbox_of(UnitRefused)
    assert topic.endswith(f"/lines/{line}/stations/{station}/commands/unit.refused")
    assert "in flight (config_issued) at station S1 of line line1" in told.reason
    assert len(world.outbox_of(FlashConfig, rid)) == 1


def test_the_owning_station_may_still_rework_a_unit_in_flight(world: World) -> None:
    ctx = world.context("individual")
    world.add_station(ctx, "S1")
    serial, mac = new_identity()
    rid = to_config_issued(ctx, scan(serial, mac, station="S1"))
    deliver(ctx, handle_scanned, scan(serial, mac, station="S1", port="/dev/ttyUSB3"))
    unit = world.unit(rid)
    assert (unit.state, unit.port, unit.rework_count) == (UnitState.KEYED, "/dev/ttyUSB3", 1)
    assert world.outbox_of(UnitRefused) == []


def test_cli_release_moves_the_unit_to_the_next_scanning_station_once(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = world.context("individual")
    world.add_station(ctx, "S1")
    serial, mac = new_identity()
    rid = assigned_unit(world, ctx, scan(serial, mac, station="S1"))
    monkeypatch.setenv("EDGELINE_DATABASE_URL", db_url)

    assert main(["unit", "release", mac.replace(":", "-").lower(), "--reason", "new firmware, RMA 42"]) == 0
    assert f"unit {rid} (assigned, last scanned at line1/S1) released for rework" in capsys.readouterr().out
    [record] = [r for r in world.audit(rid) if r.kind == "unit.released"]
    assert record.actor == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert record.detail["reason"] == "new firmware, RMA 42"

    deliver(ctx, handle_scanned, scan(serial, mac, station="S2"), source="edgeline/stations/S2")
    unit = world.unit(rid)
    assert (unit.state, unit.station, unit.rework_released) == (UnitState.KEYED, "S2", False)
    deliver(ctx, handle_scanned, scan(serial, mac, station="S1"))  # the release was used up; S2 owns it
    assert world.unit(rid).station == "S2"
    assert [m.kind for m in refusals(world, "S1")] == ["refused"]


def test_cli_release_errors_are_one_line(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELINE_DATABASE_URL", db_url)
    assert main(["unit", "release", "no-such-unit", "--reason", "x"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    with pytest.raises(ReleaseError, match="give a reason"):
        release_for_rework(world.db.uow, "whatever", reason="  ", operator="op@host", now=world.clock())


def test_a_released_quarantined_unit_is_reworked(world: World) -> None:
    ctx = world.line_ready()
    serial, mac = new_identity()
    deliver(ctx, handle_scanned, scan(serial, mac))
    other = scan(new_identity()[0], mac)
    deliver(ctx, handle_scanned, other)
    assert world.unit(other.registration_id).state is UnitState.QUARANTINED

    release_for_rework(
        world.db.uow, other.registration_id, reason="checked", operator="qa@bench", now=world.clock()
    )
    deliver(ctx, handle_scanned, other)

    unit = world.unit(other.registration_id)
    assert (unit.state, unit.failure) == (UnitState.CONFIG_ISSUED, None)


@pytest.mark.parametrize(
    "mac, settings, rule",
    [
        ("01:00:5e:00:00:01", {}, "group (multicast)"),
        ("03:00:00:00:00:01", {}, "I/G bit"),
        ("02:ed:00:00:00:01", {"mac_allow_locally_administered": False}, "locally administered"),
        ("00:1b:44:00:00:01", {"mac_allowed_ouis": ("001B45",)}, "not in mac_allowed_ouis"),
    ],
)
def test_the_keyer_refuses_macs_by_the_rules_naming_the_rule(
    world: World, mac: str, settings: dict[str, object], rule: str
) -> None:
    ctx = world.context(**settings)
    with pytest.raises(Rejected, match=re.escape(rule)):
        deliver(ctx, handle_scanned, scan("SN-MAC-1", mac))
    with world.db.uow() as uow:
        assert uow.units.count_by_state() == {}
    [told] = refusals(world, "S1")
    assert told.kind == "invalid" and rule in told.reason
    assert [r.kind for r in world.audit()] == ["scan.refused"]


def test_an_allowed_oui_is_admitted(world: World) -> None:
    ctx = world.line_ready(mac_allowed_ouis=("00:1B:44",), mac_allow_locally_administered=False)
    message = scan("SN-MAC-2", "00:1B:44:11:22:33")
    deliver(ctx, handle_scanned, message)
    assert world.unit(message.registration_id).state is UnitState.CONFIG_ISSUED


def test_two_workers_keying_units_that_share_a_mac_at_once_quarantine_one(world: World) -> None:
    """The identity check and the insert are one step across workers (advisory locks on PostgreSQL)."""
    import threading

    master_key = base64.b64encode(os.urandom(32)).decode("ascii")  # the two workers share one
    world.line_ready(master_key=master_key)
    for round_ in range(8):
        serial_a, mac = new_identity()
        serial_b, _ = new_identity()
        ctxs = [world.context(master_key=master_key), world.context(master_key=master_key)]
        scans = [scan(serial_a, mac), scan(serial_b, mac)]
        start = threading.Barrier(2)

        def key(
            i: int,
            ctxs: list[Context] = ctxs,
            scans: list[UnitScanned] = scans,
            start: threading.Barrier = start,
        ) -> None:
            start.wait()
            deliver(ctxs[i], handle_scanned, scans[i])

        threads = [threading.Thread(target=key, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        states = sorted(world.unit(s.registration_id).state.value for s in scans)
        assert states == ["config_issued", "quarantined"], f"round {round_}: {states}"
