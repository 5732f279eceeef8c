"""`edgeline audit check` against the emulator over HTTP and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import service_helpers
from service_helpers import HUB, World, to_flashed
from sqlalchemy import text

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.db.invariants import load_snapshot
from pipeline.edgeconfig.model import ParsedProvisioning
from pipeline.service.cloud_state import AzureCloudState
from pipeline.service.confirming import confirm_due_units
from pipeline.service.context import Context
from pipeline.service.enrolling import ensure_group
from pipeline.service.invariants import CheckReport, check

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def registrar() -> Iterator[HttpDeviceRegistrar]:
    device = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield device
    device.close()


def _boot(registrar: HttpDeviceRegistrar, config: ParsedProvisioning) -> None:
    result = registrar.register(
        global_endpoint=config.global_endpoint,
        id_scope=config.id_scope,
        registration_id=config.registration_id,
        key=config.device_key,
        timeout=10,
    )
    assert result.status == "assigned"


def _drain_outbox(world: World) -> None:
    with world.db.session() as session:
        session.execute(text("UPDATE outbox SET published_at = created_at WHERE published_at IS NULL"))
        session.commit()


def _check(world: World, ctx: Context) -> CheckReport:
    return check(load_snapshot(world.db), AzureCloudState(ctx.dps, ctx.hub))


def _line(
    world: World, registrar: HttpDeviceRegistrar, mode: str
) -> tuple[Context, list[str], list[ParsedProvisioning]]:
    """Three flashed units, two of them booted and confirmed; the outbox as a relay would leave it."""
    hub = AzureHubRegistry({HUB: world.emulator.hub_connection_string(HUB)}, verify=world.emulator.ca_file)
    ctx = dataclasses.replace(world.context(mode), hub=hub)
    if mode == "group":
        ensure_group(ctx)
    world.add_station(ctx, "S1")
    rids = [to_flashed(world, ctx) for _ in range(3)]
    configs = [world.config_of(rid) for rid in rids]
    for config in configs[:2]:
        _boot(registrar, config)
    assert confirm_due_units(ctx) == 2
    _drain_outbox(world)
    return ctx, rids, configs


@pytest.mark.parametrize("mode", ["group", "individual"])
def test_a_settled_line_passes_and_each_tampering_is_named(
    world: World, registrar: HttpDeviceRegistrar, mode: str
) -> None:
    ctx, rids, configs = _line(world, registrar, mode)  # two assigned, one flashed whose device never booted
    report = _check(world, ctx)
    assert report.ok, [v.line() for v in report.violations]
    assert report.units == 3

    _boot(registrar, configs[2])  # DPS now has it assigned; the confirmer has not run
    with world.db.session() as session:
        session.execute(text("UPDATE units SET state = 'flashed' WHERE registration_id = :r"), {"r": rids[0]})
        session.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 3"))
        session.commit()
    world.emulator.reset()  # DPS forgets everything: enrollments and registrations are gone

    found = {(v.unit, v.rule) for v in _check(world, ctx).violations}
    assert (rids[0], "state") in found  # row edited behind the audit trail's back
    assert (rids[1], "dps-state") in found  # assigned, DPS no longer says so
    assert (None, "audit-chain") in found
    if mode == "individual":
        assert (rids[2], "enrollment") in found


def test_left_behind_unit_and_undrained_outbox_via_the_cli(
    world: World, registrar: HttpDeviceRegistrar, db_url: str
) -> None:
    ctx, rids, configs = _line(world, registrar, "individual")
    _boot(registrar, configs[2])
    env = {
        **os.environ,
        "EDGELINE_DATABASE_URL": db_url,
        "EDGELINE_DPS_CONNECTION_STRING": ctx.settings.dps_connection_string,
        "EDGELINE_DPS_ID_SCOPE": ctx.settings.dps_id_scope,
    }
    command = [sys.executable, "-m", "pipeline.cli", "audit", "check"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"{rids[2]}: dps-state: DPS reports it assigned but the unit is flashed" in lines[0]
    assert "hub identities not checked" in done.stdout
    assert lines[-1] == "audit check: 3 unit(s) checked, 1 violation(s) (dps-state)"

    assert confirm_due_units(ctx) == 1
    with world.db.session() as session:
        session.execute(text("UPDATE outbox SET published_at = NULL"))
        session.commit()
    done = subprocess.run([*command, "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [v["rule"] for v in report["violations"]] == ["outbox"] and report["units"] == 3
    _drain_outbox(world)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
