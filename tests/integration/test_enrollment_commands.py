"""`edgeline enrollment show|disable|enable|delete` against a real database and the DPS emulator.

No mocks: EDGELINE_* settings in the environment, real service handlers, and a real device registration
(HttpDeviceRegistrar) with the key the pipeline flashed. In group mode the revoked device gets 401, not
`disabled`: the overriding individual enrollment has random keys, and DPS checks an individual
enrollment's own keys before its status (azure-notes §2.3; the emulator does the same).
"""

from __future__ import annotations

import pytest
import service_helpers
import test_group_commands
from service_helpers import World
from test_group_commands import flashed_unit_key, register

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.cli.main import main
from pipeline.domain.model import UnitState
from pipeline.service.context import Context
from pipeline.service.enrolling import ensure_group

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture
registrar_fixture = test_group_commands.registrar_fixture


@pytest.fixture(params=["individual", "group"])
def ctx(request: pytest.FixtureRequest, world: World, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A Context in one mode; the CLI gets the same settings through EDGELINE_* variables."""
    context = world.context(request.param)
    monkeypatch.delenv("EDGELINE_CONFIG", raising=False)
    for name, value in {
        "DATABASE_URL": world.db.url,
        "DPS_CONNECTION_STRING": world.emulator.service_connection_string,
        "DPS_ID_SCOPE": world.emulator.id_scope,
        "MASTER_KEY": context.settings.master_key,
        "ENROLLMENT_MODE": request.param,
    }.items():
        monkeypatch.setenv(f"EDGELINE_{name}", value)
    world.add_station(context)
    if request.param == "group":
        ensure_group(context)
    return context


def test_disable_revokes_and_enable_restores(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, capsys: pytest.CaptureFixture[str]
) -> None:
    rid, key = flashed_unit_key(world, ctx)
    assert register(world, registrar, rid, key) == "assigned"
    group_mode = ctx.settings.enrollment_mode == "group"

    assert main(["enrollment", "disable", rid, "--reason", "RMA 42"]) == 0
    assert world.unit(rid).state is UnitState.REVOKED
    assert register(world, registrar, rid, key) == ("unauthorized" if group_mode else "disabled")
    kinds = [(r.kind, r.detail.get("reason")) for r in world.audit(rid)]
    assert ("enrollment.disabled", "RMA 42") in kinds and ("unit.revoked", "RMA 42") in kinds
    enrollment = ctx.dps.get_individual_enrollment(rid)
    assert enrollment is not None and enrollment.provisioning_status == "disabled"

    capsys.readouterr()
    assert main(["enrollment", "show", rid]) == 0
    shown = capsys.readouterr().out
    assert "unit state:       revoked" in shown and "disabled, etag" in shown
    assert ("overrides the group" in shown) is group_mode

    assert main(["enrollment", "enable", rid]) == 0
    assert world.unit(rid).state is UnitState.SCANNED  # released: a rescan takes it through the line
    assert register(world, registrar, rid, key) == "assigned"
    assert (ctx.dps.get_individual_enrollment(rid) is None) is group_mode


def test_delete_is_refused_in_group_mode_and_revokes_in_individual_mode(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, capsys: pytest.CaptureFixture[str]
) -> None:
    rid, key = flashed_unit_key(world, ctx)
    assert register(world, registrar, rid, key) == "assigned"

    code = main(["enrollment", "delete", rid])

    if ctx.settings.enrollment_mode == "group":
        assert code == 1
        assert "re-enroll through the group" in capsys.readouterr().err
        assert world.unit(rid).state is UnitState.FLASHED
        assert register(world, registrar, rid, key) == "assigned"
    else:
        assert code == 0
        assert world.unit(rid).state is UnitState.REVOKED
        assert ctx.dps.get_individual_enrollment(rid) is None
        assert register(world, registrar, rid, key) == "unauthorized"


def test_unknown_unit_is_one_line(world: World, ctx: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enrollment", "disable", "sn-nope-mac-00-00-00-00-00-00"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "edgeline enrollment: unit 'sn-nope-mac-00-00-00-00-00-00' is not in the database"
    )
    assert "\n" not in error


def test_missing_setting_names_it(
    world: World, ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDGELINE_DPS_CONNECTION_STRING")
    assert main(["enrollment", "show", "sn-x-mac-00-00-00-00-00-01"]) == 2
    assert "EDGELINE_DPS_CONNECTION_STRING" in capsys.readouterr().err
