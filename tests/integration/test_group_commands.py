"""`edgeline group create|show|rotate-key` against a real database and the DPS emulator over HTTP.

No mocks: the CLI is driven through `pipeline.cli.main.main` with EDGELINE_* settings in the
environment (configuration), units go through the real service handlers, and devices register
through the real device API (HttpDeviceRegistrar) with the keys the pipeline would flash.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest
import service_helpers
from service_helpers import World

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.ports import AzureError
from pipeline.cli.main import main
from pipeline.domain.keys import SecretKey
from pipeline.keystore.sealed import group_key_context
from pipeline.service.context import Context
from pipeline.service.unit_of_work import GroupRecord

shared_emulator = service_helpers.shared_emulator
registrar_fixture = service_helpers.registrar_fixture
register = service_helpers.register
flashed_unit_key = service_helpers.flashed_unit_key
world_fixture = service_helpers.world_fixture


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


@pytest.fixture
def ctx(world: World, master_key: str, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A group-mode Context; the CLI gets the same settings through EDGELINE_* variables."""
    monkeypatch.delenv("EDGELINE_CONFIG", raising=False)
    settings = {
        "DATABASE_URL": world.db.url,
        "DPS_CONNECTION_STRING": world.emulator.service_connection_string,
        "DPS_ID_SCOPE": world.emulator.id_scope,
        "MASTER_KEY": master_key,
        "ENROLLMENT_MODE": "group",
        "TOPIC_ROOT": world.topic_root,
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"EDGELINE_{name}", value)
    context = world.context("group", master_key=master_key)
    world.add_station(context)
    return context


def stored_keys(world: World, ctx: Context) -> tuple[SecretKey, SecretKey]:
    group_id = ctx.settings.group_id()
    with world.db.uow() as uow:
        record = uow.groups.get(group_id)
    assert record is not None
    return (
        ctx.sealer.unseal_key(record.sealed_primary_key, context=group_key_context(group_id, "primary")),
        ctx.sealer.unseal_key(record.sealed_secondary_key, context=group_key_context(group_id, "secondary")),
    )


def test_create_is_idempotent_and_show_prints_no_key(
    world: World, ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["group", "create"]) == 0
    etag = ctx.dps.get_enrollment_group(ctx.settings.group_id())
    assert main(["group", "create"]) == 0
    assert main(["group", "show"]) == 0

    output = capsys.readouterr().out
    primary, secondary = stored_keys(world, ctx)
    again = ctx.dps.get_enrollment_group(ctx.settings.group_id())
    assert etag is not None and again is not None and etag.etag == again.etag  # nothing rewritten
    assert len(world.emulator.dump()["dps"]["enrollmentGroups"]) == 1
    assert f"sha256:{primary.fingerprint}" in output and f"sha256:{secondary.fingerprint}" in output
    assert primary.reveal_base64() not in output and secondary.reveal_base64() not in output
    assert primary.reveal_base64()[:12] not in output
    assert "etag:" in output and "provisioning status: enabled" in output


def test_create_fails_in_one_line_when_dps_has_other_keys(
    world: World, ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["group", "create"]) == 0
    with world.db.uow() as uow:  # another installation's database: same group id, other keys
        uow.groups.put(_other_keys(ctx))
        uow.commit()

    assert main(["group", "create"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("edgeline group: DPS:") and "different keys" in error
    assert "\n" not in error


def test_rotation_keeps_flashed_devices_and_the_second_drops_the_oldest_key(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["group", "create"]) == 0
    old_rid, old_key = flashed_unit_key(world, ctx)
    assert register(world, registrar, old_rid, old_key) == "assigned"
    old_primary, _ = stored_keys(world, ctx)

    assert main(["group", "rotate-key"]) == 0
    new_primary, secondary = stored_keys(world, ctx)
    assert secondary == old_primary and new_primary != old_primary
    assert register(world, registrar, old_rid, old_key) == "assigned"  # flashed before: still works
    world.clock.now = datetime.now(UTC) + timedelta(seconds=1)  # configured after the rotation
    new_rid, new_key = flashed_unit_key(world, ctx)
    assert register(world, registrar, new_rid, new_key) == "assigned"
    capsys.readouterr()

    assert main(["group", "rotate-key"]) == 1  # would drop the key old_rid was flashed with
    error = capsys.readouterr().err
    assert "1 unit(s)" in error and "--force" in error
    assert stored_keys(world, ctx)[0] == new_primary

    assert main(["group", "rotate-key", "--force"]) == 0
    assert "warning: 1 unit(s)" in capsys.readouterr().err
    assert register(world, registrar, old_rid, old_key) == "unauthorized"
    assert register(world, registrar, new_rid, new_key) == "assigned"
    rotations = [r for r in world.audit() if r.kind == "group.key_rotated"]
    assert [r.detail["forced"] for r in rotations] == [False, True]
    assert rotations[1].detail["dropped"] == old_primary.fingerprint


def test_replace_group_keys_needs_the_current_etag_and_keeps_other_fields(world: World, ctx: Context) -> None:
    assert main(["group", "create"]) == 0
    group_id = ctx.settings.group_id()
    before = ctx.dps.get_enrollment_group(group_id)
    assert before is not None and before.etag
    primary, secondary = SecretKey.generate(), SecretKey.generate()

    ctx.dps.replace_enrollment_group_keys(group_id, primary, secondary, etag=before.etag)
    with pytest.raises(AzureError) as stale:
        ctx.dps.replace_enrollment_group_keys(group_id, secondary, primary, etag=before.etag)

    after = ctx.dps.get_enrollment_group(group_id)
    assert stale.value.status == 412
    assert after is not None and after.etag != before.etag
    assert after.iot_edge and after.raw.get("reprovisionPolicy") == before.raw.get("reprovisionPolicy")
    [record] = world.emulator.state.groups.values()
    keys = record["attestation"]["symmetricKey"]
    assert (keys["primaryKey"], keys["secondaryKey"]) == (primary.reveal_base64(), secondary.reveal_base64())


def _other_keys(ctx: Context) -> GroupRecord:
    group_id = ctx.settings.group_id()
    return GroupRecord(
        group_id=group_id,
        product=ctx.settings.product,
        created_at=datetime.now(UTC),
        sealed_primary_key=ctx.sealer.seal_key(
            SecretKey.generate(), context=group_key_context(group_id, "primary")
        ),
        sealed_secondary_key=ctx.sealer.seal_key(
            SecretKey.generate(), context=group_key_context(group_id, "secondary")
        ),
    )
