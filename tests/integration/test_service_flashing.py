"""Flash recorder (pipeline.service.flashing): only the unit's own station and config version count."""

from __future__ import annotations

from datetime import timedelta

import pytest
import service_helpers
from service_helpers import World, deliver, to_config_issued

from pipeline.domain.events import ConfigFlashed, FlashFailed, ScanRejected, UnitFailed
from pipeline.domain.model import UnitState
from pipeline.service.context import Context
from pipeline.service.enrolling import ensure_group
from pipeline.service.flashing import handle_flash_failed, handle_flashed, handle_scan_rejected

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def issued(world: World) -> tuple[Context, str]:
    """A group-mode context with stations S1 and S2, and one unit config_issued on S1."""
    ctx = world.context("group", confirm_backoff_initial_seconds=30)
    ensure_group(ctx)
    world.add_station(ctx, "S1")
    world.add_station(ctx, "S2")
    return ctx, to_config_issued(ctx)


def flashed(world: World, rid: str, *, station: str = "S1", sha: str | None = None) -> ConfigFlashed:
    unit = world.unit(rid)
    return ConfigFlashed(
        registration_id=rid,
        station=station,
        port=unit.port or "",
        config_sha256=sha if sha is not None else unit.config_sha256 or "",
    )


def test_flashed_with_the_issued_sha_schedules_the_first_check(
    world: World, issued: tuple[Context, str]
) -> None:
    ctx, rid = issued
    deliver(ctx, handle_flashed, flashed(world, rid), source="edgeline/stations/S1")

    unit = world.unit(rid)
    assert unit.state is UnitState.FLASHED
    assert unit.checks == 0
    assert unit.next_check_at == world.clock() + timedelta(seconds=30)
    assert unit.stage_times["flashed"] == world.clock()
    assert [r.actor for r in world.audit(rid) if r.kind == "unit.flashed"] == ["station:S1:/dev/ttyUSB0"]


def test_flashed_with_another_sha_is_ignored(world: World, issued: tuple[Context, str]) -> None:
    ctx, rid = issued
    deliver(ctx, handle_flashed, flashed(world, rid, sha="0" * 64))

    unit = world.unit(rid)
    assert (unit.state, unit.next_check_at) == (UnitState.CONFIG_ISSUED, None)
    ignored = [r for r in world.audit(rid) if r.kind == "flash.ignored"]
    assert len(ignored) == 1
    assert "another config version" in ignored[0].detail["reason"]


def test_flashed_reported_by_another_station_is_ignored(world: World, issued: tuple[Context, str]) -> None:
    ctx, rid = issued
    deliver(ctx, handle_flashed, flashed(world, rid, station="S2"), source="edgeline/stations/S2")

    assert world.unit(rid).state is UnitState.CONFIG_ISSUED
    ignored = [r for r in world.audit(rid) if r.kind == "flash.ignored"]
    assert [(r.actor, "another station" in r.detail["reason"]) for r in ignored] == [
        ("station:S2:/dev/ttyUSB0", True)
    ]


def test_flashed_for_an_unknown_unit_is_audited(world: World, issued: tuple[Context, str]) -> None:
    ctx, _ = issued
    event = ConfigFlashed(registration_id="sn-unknown", station="S1", port="p", config_sha256="0" * 64)
    deliver(ctx, handle_flashed, event)
    assert [r.kind for r in world.audit() if r.kind == "flash.ignored"] == ["flash.ignored"]


def test_duplicate_flashed_is_a_no_op(world: World, issued: tuple[Context, str]) -> None:
    ctx, rid = issued
    deliver(ctx, handle_flashed, flashed(world, rid))
    world.clock.advance(seconds=5)
    deliver(ctx, handle_flashed, flashed(world, rid))  # the station re-sent it under a new id

    unit = world.unit(rid)
    assert unit.state is UnitState.FLASHED
    assert unit.next_check_at == world.clock() - timedelta(seconds=5) + timedelta(seconds=30)


def test_flash_failed_fails_the_unit_at_flash(world: World, issued: tuple[Context, str]) -> None:
    ctx, rid = issued
    unit = world.unit(rid)
    event = FlashFailed(
        registration_id=rid, station="S1", port=unit.port or "", reason="read-back mismatch", retryable=True
    )
    deliver(ctx, handle_flash_failed, event)

    unit = world.unit(rid)
    assert unit.failure is not None
    assert (unit.state, unit.failure.stage, unit.failure.retryable) == (UnitState.FAILED, "flash", True)
    assert "read-back mismatch" in unit.failure.reason
    assert "S1" in unit.failure.reason
    [(_, failed)] = world.outbox_of(UnitFailed, rid)
    assert (failed.stage, failed.attempt) == ("flash", 1)


def test_flash_failed_from_another_station_is_ignored(world: World, issued: tuple[Context, str]) -> None:
    ctx, rid = issued
    event = FlashFailed(registration_id=rid, station="S2", port="p", reason="nope", retryable=False)
    deliver(ctx, handle_flash_failed, event)
    assert world.unit(rid).state is UnitState.CONFIG_ISSUED


def test_scan_rejected_is_audited(world: World, issued: tuple[Context, str]) -> None:
    ctx, _ = issued
    event = ScanRejected(line="line1", station="S1", port="p", reason="bad serial", raw_serial="x_y")
    deliver(ctx, handle_scan_rejected, event)
    [record] = [r for r in world.audit() if r.kind == "scan.rejected"]
    assert (record.actor, record.detail["raw_serial"], record.registration_id) == (
        "station:S1:p",
        "x_y",
        None,
    )
    assert record.detail["recorded_by"].startswith("worker:")
