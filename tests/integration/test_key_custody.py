"""Group keys in a SoftHSM2 token, end to end with the DPS emulator: create, derive, rotate, key ledger.

The CLI runs in-process (`pipeline.cli.main.main`) with EDGELINE_* settings; devices register through
the real device API with the keys the pipeline derived inside the token.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import service_helpers
from service_helpers import World, scan, to_config_issued

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.cli.main import main
from pipeline.domain.keys import derive_device_key
from pipeline.keystore.pkcs11 import Pkcs11GroupKeyStore, Pkcs11Token, TokenSettings
from pipeline.service.common import device_key
from pipeline.service.context import Context

shared_emulator = service_helpers.shared_emulator
registrar_fixture = service_helpers.registrar_fixture
register = service_helpers.register
flashed_unit_key = service_helpers.flashed_unit_key
world_fixture = service_helpers.world_fixture


@pytest.fixture
def token(softhsm: dict[str, str]) -> Iterator[Pkcs11Token]:
    opened = Pkcs11Token(TokenSettings(**softhsm))
    yield opened
    opened.close()


@pytest.fixture
def ctx(
    world: World, token: Pkcs11Token, softhsm: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Context:
    """A group-mode Context whose group keys live in the token; the CLI gets the same settings."""
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    monkeypatch.delenv("EDGELINE_CONFIG", raising=False)
    group_id = f"edgeline-hsm-{world.topic_root[-8:]}"
    settings = {
        "DATABASE_URL": world.db.url,
        "DPS_CONNECTION_STRING": world.emulator.service_connection_string,
        "DPS_ID_SCOPE": world.emulator.id_scope,
        "MASTER_KEY": master_key,
        "ENROLLMENT_MODE": "group",
        "ENROLLMENT_GROUP_ID": group_id,
        "TOPIC_ROOT": world.topic_root,
        "KEY_STORE": "pkcs11",
        "PKCS11_MODULE": softhsm["module"],
        "PKCS11_TOKEN_LABEL": softhsm["token_label"],
        "PKCS11_PIN": softhsm["pin"],
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"EDGELINE_{name}", value)
    context = world.context("group", master_key=master_key, enrollment_group_id=group_id, key_store="pkcs11")
    context = dataclasses.replace(context, group_keys=Pkcs11GroupKeyStore(token))
    world.made[-1] = context
    world.add_station(context)
    return context


def test_group_created_in_the_token_is_locked_and_derives_what_dps_accepts(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["group", "create", "--key-store", "pkcs11"]) == 0
    assert "in the pkcs11 key store" in capsys.readouterr().out
    group_id = ctx.settings.group_id()
    with world.db.uow() as uow:
        record = uow.groups.get(group_id)
    assert record is not None and record.sealed_primary_key.startswith(b"pkcs11:")
    store = ctx.group_key_store()
    assert store.reveal(record.sealed_primary_key, group_id, "primary") is None  # locked after DPS got it
    dps_primary, _ = ctx.dps.get_enrollment_group_keys(group_id) or (None, None)
    assert dps_primary is not None and store.matches(
        record.sealed_primary_key, group_id, "primary", dps_primary
    )

    rid, key = flashed_unit_key(world, ctx)
    assert key == derive_device_key(dps_primary, rid)  # derived in the token, as DPS derives it
    assert register(world, registrar, rid, key) == "assigned"
    unit = world.unit(rid)
    assert (unit.key_store, unit.key_source, unit.key_fingerprint) == (
        "pkcs11",
        f"group:{group_id}",
        dps_primary.fingerprint,
    )
    assert main(["group", "create"]) == 0  # idempotent: keys confirmed against DPS through the token


def test_rollover_keeps_field_units_working_and_the_ledger_answers_the_blast_radius(
    world: World, ctx: Context, registrar: HttpDeviceRegistrar, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["group", "create"]) == 0
    old = [flashed_unit_key(world, ctx) for _ in range(3)]
    old_fp = world.unit(old[0][0]).key_fingerprint
    assert old_fp is not None

    assert main(["group", "rotate-key"]) == 0
    assert all(register(world, registrar, rid, key) == "assigned" for rid, key in old)  # secondary now
    world.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    new_rid, new_key = flashed_unit_key(world, ctx)
    assert register(world, registrar, new_rid, new_key) == "assigned"
    assert world.unit(new_rid).key_fingerprint != old_fp
    capsys.readouterr()

    assert main(["keys", "blast-radius", "--version", "secondary", "--format", "json"]) == 0
    radius = json.loads(capsys.readouterr().out)
    assert radius["fingerprint"] == old_fp and radius["units"] == 3
    assert sorted(radius["registration_ids"]) == sorted(rid for rid, _ in old)
    assert radius["lines"] == {"line1": 3} and radius["key_store"] == "pkcs11"

    assert main(["keys", "rollover", "--units"]) == 0
    progress = capsys.readouterr().out
    assert "3 unit(s) not yet on the primary key" in progress
    assert all(rid in progress for rid, _ in old) and new_rid not in progress.split("not yet on")[1]

    # rework one old unit: it is re-flashed with a key derived from the new primary; the ledger follows
    reworked = old[0][0]
    to_config_issued(ctx, scan(*_identity(world, reworked)))
    assert world.unit(reworked).key_fingerprint == world.unit(new_rid).key_fingerprint
    assert main(["keys", "rollover", "--format", "json"]) == 0
    versions = {v["fingerprint"]: v["units"] for v in json.loads(capsys.readouterr().out)["versions"]}
    assert versions == {old_fp: 2, world.unit(new_rid).key_fingerprint: 2}


def _identity(world: World, rid: str) -> tuple[str, str]:
    unit = world.unit(rid)
    return unit.serial, unit.mac


def test_setup_errors_in_the_cli_are_one_line(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELINE_PKCS11_TOKEN_LABEL", "no-such-token")
    assert main(["group", "show"]) != 0
    error = capsys.readouterr().err.strip()
    assert "pkcs11_token_label" in error and "\n" not in error and "Traceback" not in error


def _key_file(tmp: object, name: str, key: str) -> str:
    from pathlib import Path

    path = Path(str(tmp)) / name
    path.write_text(key)
    path.chmod(0o600)
    return str(path)


def test_rotate_master_reseals_everything_and_workers_then_need_only_the_new_key(
    world: World, tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old_key = base64.b64encode(os.urandom(32)).decode()
    individual = world.context("individual", master_key=old_key)
    world.add_station(individual)
    rids = [service_helpers.to_keyed(individual) for _ in range(3)]
    sealed_group = world.context("group", master_key=old_key)
    from pipeline.service.enrolling import ensure_group

    ensure_group(sealed_group)
    new_key = base64.b64encode(os.urandom(32)).decode()
    for name, value in {
        "DATABASE_URL": world.db.url,
        "MASTER_KEY": new_key,
        "MASTER_KEY_PREVIOUS_FILE": _key_file(tmp_path, "old.key", old_key),
    }.items():
        monkeypatch.setenv(f"EDGELINE_{name}", value)
    monkeypatch.delenv("EDGELINE_CONFIG", raising=False)

    assert main(["keys", "rotate-master"]) == 0
    assert "re-sealed 3 device key(s) and 2 group key(s)" in capsys.readouterr().out
    assert main(["keys", "rotate-master"]) == 0  # again: nothing left under the old key
    assert "re-sealed 0 device key(s) and 0 group key(s)" in capsys.readouterr().out

    only_new = world.context("individual", master_key=new_key)  # a worker without the old key
    units = [world.unit(rid) for rid in rids]
    with world.db.uow() as uow:
        for unit in units:
            assert device_key(uow, only_new, unit) is not None
    rotated = [r for r in world.audit() if r.kind == "keys.master_rotated"]
    assert [r.detail["device_keys"] for r in rotated] == [3, 0] and rotated[0].actor.startswith("cli:")


def test_rotate_master_into_the_token(
    world: World,
    softhsm: dict[str, str],
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old_key = base64.b64encode(os.urandom(32)).decode()
    individual = world.context("individual", master_key=old_key)
    world.add_station(individual)
    rid = service_helpers.to_keyed(individual)
    label = f"edgeline-master-{world.topic_root[-8:]}"
    for name, value in {
        "DATABASE_URL": world.db.url,
        "PKCS11_MODULE": softhsm["module"],
        "PKCS11_TOKEN_LABEL": softhsm["token_label"],
        "PKCS11_PIN": softhsm["pin"],
        "PKCS11_MASTER_KEY_LABEL": label,
        "MASTER_KEY_PREVIOUS_FILE": _key_file(tmp_path, "old.key", old_key),
    }.items():
        monkeypatch.setenv(f"EDGELINE_{name}", value)
    monkeypatch.delenv("EDGELINE_CONFIG", raising=False)
    monkeypatch.delenv("EDGELINE_MASTER_KEY", raising=False)

    assert main(["keys", "rotate-master", "--create-token-key"]) == 0
    assert "re-sealed 1 device key(s)" in capsys.readouterr().out
    from pipeline.keystore.pkcs11 import Pkcs11Sealer

    hsm = Pkcs11Token(TokenSettings(**softhsm))
    try:
        sealer = Pkcs11Sealer(hsm, label)
        with world.db.uow() as uow:
            blob = uow.keys.get(rid)
        assert blob is not None and sealer.sealed_with_current_key(blob)
        assert sealer.unseal_key(blob, context=f"device-key:{rid}") is not None
    finally:
        hsm.close()
