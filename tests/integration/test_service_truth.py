"""The database converges to what DPS says, overdue units are flagged, flashes are acknowledged end to end.

Issue #8 §3 and #11 defects 4 and 5, on the real database (both backends) and the DPS emulator over HTTP.
"""

from __future__ import annotations

import csv
import dataclasses
import getpass
import io
import json
import os
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
import service_helpers
from service_helpers import HUB, World, deliver, envelope, to_config_issued, to_flashed

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.bootstrap import open_admin
from pipeline.bus.cloudevents import decode, encode
from pipeline.cli.main import main
from pipeline.db.audit import units_query
from pipeline.domain.events import ConfigFlashed, FlashFailed, FlashRecorded, UnitAssigned, UnitNotice
from pipeline.domain.model import UnitState
from pipeline.service import flashing, keying
from pipeline.service.actors import cli_identity
from pipeline.service.common import audit
from pipeline.service.confirming import confirm_due_units
from pipeline.service.context import Context

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def registrar() -> Iterator[HttpDeviceRegistrar]:
    device = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield device
    device.close()


def line_context(world: World, mode: str = "group", **overrides: object) -> Context:
    return world.line_ready(mode, confirm_backoff_initial_seconds=10, **overrides)


def boot(world: World, registrar: HttpDeviceRegistrar, rid: str) -> None:
    config = world.config_of(rid)
    result = registrar.register(
        global_endpoint=config.global_endpoint,
        id_scope=config.id_scope,
        registration_id=config.registration_id,
        key=config.device_key,
        timeout=10,
    )
    assert result.status == "assigned"


def assigned_record(world: World, rid: str) -> dict[str, object]:
    [record] = [r for r in world.audit(rid) if r.kind == "unit.assigned"]
    return record.detail


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_config_issued_unit_whose_flash_event_was_lost_converges(
    world: World, registrar: HttpDeviceRegistrar, mode: str
) -> None:
    ctx = line_context(world, mode)
    rid = to_config_issued(ctx)
    boot(world, registrar, rid)  # the station flashed it, but `config.flashed` never reached the pipeline
    assert confirm_due_units(ctx) == 0  # not settled yet: the station's result may still be on its way

    world.clock.advance(seconds=11)
    assert confirm_due_units(ctx) == 1

    unit = world.unit(rid)
    assert (unit.state, unit.assigned_hub, unit.next_check_at) == (UnitState.ASSIGNED, HUB, None)
    detail = assigned_record(world, rid)
    assert detail["converged"] == f"converged from config_issued to assigned as DPS reports (hub {HUB})"
    assert world.outbox_of(UnitAssigned, rid)
    [(topic, notice)] = world.outbox_of(UnitNotice, rid)
    assert topic.endswith("/stations/S1/commands/unit.notice")
    assert (notice.kind, notice.state, notice.final) == ("assigned", "assigned", True)

    # The station's result was only held up (a broker outage): its verified read-back is still recorded.
    sha = world.unit(rid).config_sha256 or ""
    late = ConfigFlashed(registration_id=rid, station="S1", port="/dev/ttyUSB0", config_sha256=sha)
    deliver(ctx, flashing.handle_flashed, late)
    [verified] = [r for r in world.audit(rid) if r.kind == "flash.verified"]
    assert (verified.detail["config_sha256"], verified.detail["after"]) == (sha, "assigned")
    unit = world.unit(rid)
    times = unit.stage_times
    assert unit.state is UnitState.ASSIGNED
    assert times["config_issued"] <= times["flashed"] <= times["assigned"]  # in flow order, station's time
    [(_, ack)] = world.outbox_of(FlashRecorded, rid)
    assert ack.outcome.startswith("recorded: unit was already assigned")

    deliver(ctx, flashing.handle_flashed, late)  # confirmed again under a new event id: recorded once
    assert [r.kind for r in world.audit(rid)].count("flash.verified") == 1
    assert world.outbox_of(FlashRecorded, rid)[-1][1].outcome == "no change: unit is assigned"


def test_a_reworked_unit_is_not_converged_on_its_previous_visits_assignment(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    ctx = line_context(world, rework_assigned="allow")
    first = service_helpers.scan()
    rid = to_flashed(world, ctx, first)
    boot(world, registrar, rid)
    world.clock.advance(seconds=11)
    assert confirm_due_units(ctx) == 1  # the first visit: assigned

    to_config_issued(ctx, first)  # plugged in again: rework, a new config; DPS still says assigned
    assert world.unit(rid).rework_count == 1
    world.clock.advance(seconds=11)

    assert confirm_due_units(ctx) == 0  # the old assignment says nothing about the new config
    assert world.unit(rid).state is UnitState.CONFIG_ISSUED

    unit = world.unit(rid)
    flashed = ConfigFlashed(
        registration_id=rid, station="S1", port="/dev/ttyUSB0", config_sha256=unit.config_sha256 or ""
    )
    deliver(ctx, flashing.handle_flashed, flashed)
    world.clock.advance(seconds=11)
    assert confirm_due_units(ctx) == 1
    assert world.unit(rid).state is UnitState.ASSIGNED
    assert [r.kind for r in world.audit(rid)].count("unit.flashed") == 2


def test_failed_unit_dps_reports_assigned_converges_and_says_from_what(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    ctx = line_context(world)
    rid = to_config_issued(ctx)
    deliver(
        ctx,
        flashing.handle_flash_failed,
        FlashFailed(
            registration_id=rid, station="S1", port="/dev/ttyUSB0", reason="reboot hung", retryable=False
        ),
    )
    assert world.unit(rid).state is UnitState.FAILED
    boot(world, registrar, rid)  # yet the config was on the device and it registered
    world.clock.advance(seconds=11)

    assert confirm_due_units(ctx) == 1

    assert world.unit(rid).state is UnitState.ASSIGNED
    converged = assigned_record(world, rid)["converged"]
    assert converged == (
        "converged from failed(flash, station S1 port /dev/ttyUSB0: reboot hung) to assigned "
        f"as DPS reports (hub {HUB})"
    )


def test_unit_failed_as_stale_still_converges_when_the_device_comes_online(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    ctx = line_context(world, "individual", confirm_window_hours=0.01)  # 36 s
    rid = to_flashed(world, ctx)
    world.clock.advance(seconds=40)
    confirm_due_units(ctx)
    unit = world.unit(rid)
    assert unit.state is UnitState.FAILED and unit.failure is not None and unit.failure.stage == "confirm"

    boot(world, registrar, rid)
    assert unit.next_check_at is not None
    world.clock.now = unit.next_check_at  # still within the window counted from the failure
    assert confirm_due_units(ctx) == 1

    assert world.unit(rid).state is UnitState.ASSIGNED
    assert str(assigned_record(world, rid)["converged"]).startswith(
        "converged from failed(confirm, device did"
    )


def test_quarantined_unit_dps_reports_assigned_is_recorded_once_and_left_to_a_human(
    world: World, registrar: HttpDeviceRegistrar
) -> None:
    ctx = line_context(world)
    rid = to_config_issued(ctx)
    boot(world, registrar, rid)
    with world.db.uow() as uow:  # e.g. a conflicting scan quarantined it after its config went out
        unit = uow.units.get(rid)
        assert unit is not None
        unit.state = UnitState.QUARANTINED
        uow.units.save(unit)
        uow.commit()
    world.clock.advance(seconds=11)

    assert confirm_due_units(ctx) == 0
    world.clock.advance(seconds=3600)
    assert confirm_due_units(ctx) == 0

    assert world.unit(rid).state is UnitState.QUARANTINED
    [record] = [r for r in world.audit(rid) if r.kind == "unit.assigned_while_quarantined"]
    assert record.detail["assigned_hub"] == HUB and "human" in str(record.detail["reason"])


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_flashed_unit_waiting_too_long_is_flagged_once_and_its_station_told(world: World, mode: str) -> None:
    ctx = line_context(world, mode, assignment_overdue_seconds=60, confirm_backoff_max_seconds=1000)
    rid = to_flashed(world, ctx)
    flashed_at = world.unit(rid).stage_times["flashed"]
    world.clock.advance(seconds=11)
    assert confirm_due_units(ctx) == 0
    unit = world.unit(rid)
    assert unit.assignment_overdue_at is None
    assert unit.next_check_at is not None
    assert (unit.next_check_at - flashed_at).total_seconds() <= 60  # the backoff lands on the deadline

    while (unit := world.unit(rid)).assignment_overdue_at is None:
        assert unit.next_check_at is not None and (unit.next_check_at - flashed_at).total_seconds() <= 60
        world.clock.now = unit.next_check_at
        confirm_due_units(ctx)

    assert unit.state is UnitState.FLASHED
    assert (unit.assignment_overdue_at - flashed_at).total_seconds() == pytest.approx(60, abs=0.01)
    reason = unit.assignment_overdue_reason
    assert reason == "flashed 1 min ago, DPS reports not registered: check the device's network/DPS endpoint"
    [(topic, notice)] = world.outbox_of(UnitNotice, rid)
    assert topic.endswith("/stations/S1/commands/unit.notice")
    assert (notice.kind, notice.state, notice.reason, notice.final) == ("overdue", "flashed", reason, False)
    assert [r.detail["reason"] for r in world.audit(rid) if r.kind == "unit.assignment_overdue"] == [reason]

    assert unit.next_check_at is not None
    world.clock.now = unit.next_check_at
    confirm_due_units(ctx)  # flagged once, not again at every check
    assert len(world.outbox_of(UnitNotice, rid)) == 1


def test_config_flashed_is_acknowledged_after_commit_and_again_for_a_duplicate(world: World) -> None:
    ctx = line_context(world)
    rid = to_config_issued(ctx)
    sha = world.unit(rid).config_sha256
    assert sha is not None
    event = ConfigFlashed(registration_id=rid, station="S1", port="/dev/ttyUSB0", config_sha256=sha)
    env = envelope(event, event_id="7d9c8a38-0000-4000-8000-00000000f1a5")

    flashing.handle_flashed(ctx, env)
    flashing.handle_flashed(ctx, env)  # the station re-sent it: its ack was lost or late

    acks = world.outbox_of(FlashRecorded, rid)
    assert [a.event_id for _, a in acks] == [env.id, env.id]
    assert [a.outcome for _, a in acks] == ["flashed", "already recorded"]
    assert all(t.endswith("/lines/line1/stations/S1/commands/flash.recorded") for t, _ in acks)
    assert [r.kind for r in world.audit(rid)].count("unit.flashed") == 1


def test_a_flash_result_for_an_old_config_is_acknowledged_as_ignored(world: World) -> None:
    ctx = line_context(world)
    rid = to_config_issued(ctx)
    event = ConfigFlashed(registration_id=rid, station="S1", port="/dev/ttyUSB0", config_sha256="ab" * 32)
    env = envelope(event)

    flashing.handle_flashed(ctx, env)

    [(_, ack)] = world.outbox_of(FlashRecorded, rid)
    assert (ack.event_id, ack.outcome) == (env.id, "ignored: result for another config version")
    assert world.unit(rid).state is UnitState.CONFIG_ISSUED


def test_scan_records_the_station_as_actor_and_both_times(world: World) -> None:
    ctx = line_context(world)
    message = service_helpers.scan(port="/dev/ttyACM3")
    station_time = world.clock() - timedelta(minutes=7)  # spooled while the broker was away
    env = decode(encode(message, source="edgeline/stations/S1", time=station_time)[1])

    keying.handle_scanned(ctx, env)

    rid = message.registration_id
    unit = world.unit(rid)
    assert (unit.station_scanned_at, unit.stage_times["scanned"]) == (station_time, world.clock())
    [scanned] = [r for r in world.audit(rid) if r.kind == "unit.scanned"]
    assert scanned.actor == "station:S1:/dev/ttyACM3"
    assert scanned.detail["station_time"] == station_time.isoformat()
    assert scanned.detail["recorded_by"] == f"worker:{socket.gethostname()}:{os.getpid()}"
    [keyed] = [r for r in world.audit(rid) if r.kind == "unit.keyed"]
    assert keyed.actor == f"keyer@worker:{socket.gethostname()}:{os.getpid()}"
    [view] = units_query(world.db)
    row = view.to_dict()
    assert (row["station_scanned_at"], row["scanned_at"]) == (
        station_time.isoformat(),
        world.clock().isoformat(),
    )


def test_an_operator_command_records_the_os_user_and_host(world: World) -> None:
    ctx = dataclasses.replace(line_context(world), instance=cli_identity())
    rid = to_config_issued(ctx)
    with ctx.uow_factory() as uow:
        unit = uow.units.get(rid)
        assert unit is not None
        audit(uow, ctx, unit, "unit.note", "operator", note="checked by hand")
        uow.commit()
    [note] = [r for r in world.audit(rid) if r.kind == "unit.note"]
    assert note.actor == f"cli:{getpass.getuser()}@{socket.gethostname()}"


def test_audit_units_lists_overdue_units_with_the_reason(world: World) -> None:
    ctx = line_context(world, assignment_overdue_seconds=5)
    late, fine = to_flashed(world, ctx), to_config_issued(ctx)
    world.clock.advance(seconds=12)
    confirm_due_units(ctx)

    [view] = units_query(world.db, overdue=True)
    assert view.registration_id == late and view.registration_id != fine
    assert view.to_dict()["assignment_overdue_reason"].startswith(
        "flashed 0 min ago, DPS reports not registered"
    )


def test_cli_audit_units_overdue_shows_the_flag_in_every_format(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = line_context(world, assignment_overdue_seconds=5)
    late = to_flashed(world, ctx)
    to_config_issued(ctx)
    world.clock.advance(seconds=12)
    confirm_due_units(ctx)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", db_url)

    assert main(["audit", "units", "--overdue", "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["registration_id"] == late and row["assignment_overdue_at"] is not None
    assert main(["audit", "units", "--overdue", "--format", "csv"]) == 0
    [line] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert "DPS reports not registered" in line["assignment_overdue_reason"]
    assert line["station_scanned_at"] and line["scanned_at"]
    assert main(["audit", "units", "--overdue"]) == 0
    assert "1 unit(s)" in capsys.readouterr().out


def test_dps_down_flags_nothing_overdue_from_its_silence(world: World) -> None:
    ctx = line_context(world, assignment_overdue_seconds=5)
    rid = to_flashed(world, ctx)
    world.emulator.set_faults(error_rate_5xx=1.0)
    world.clock.advance(seconds=12)
    confirm_due_units(ctx)
    unit = world.unit(rid)
    assert (unit.state, unit.assignment_overdue_at) == (UnitState.FLASHED, None)

    world.emulator.set_faults()
    assert unit.next_check_at is not None
    world.clock.now = unit.next_check_at
    confirm_due_units(ctx)
    assert world.unit(rid).assignment_overdue_at == world.clock()


def test_operator_sessions_act_as_the_cli_user(world: World, db_url: str) -> None:
    settings = dataclasses.replace(line_context(world).settings, database_url=db_url)
    session = open_admin(settings)
    try:
        assert session.ctx.instance == cli_identity()
        assert session.ctx.instance.startswith("cli:") and "@" in session.ctx.instance
    finally:
        session.close()
