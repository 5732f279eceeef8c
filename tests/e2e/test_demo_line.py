"""The README's promise, checked from outside: `edgeline demo` on PostgreSQL + Mosquitto.

Every unit reaches `assigned`; each device's flash holds a parseable config with its own registration
ID and the key DPS accepted; the audit command lists the units; no device key appears in clear in the
database, on the bus, or in the logs; every message on the bus matches the published AsyncAPI contract.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Mosquitto, create_pg_database, drop_pg_database
from e2e_helpers import Sniffer, dump_postgres, edgeline

from pipeline.bus.contract import validate_published

UNITS = 24
STATIONS = 3
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One demo run on a private PostgreSQL database and a private Mosquitto, shared by this module."""
    pg_url = create_pg_database()
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        sniffer = Sniffer(broker.port)
        devices = tmp_path_factory.mktemp("devices")
        env = {"EDGELINE_DATABASE_URL": pg_url, "EDGELINE_MQTT_URL": broker.url}
        result = edgeline(
            "demo",
            "--units",
            str(UNITS),
            "--stations",
            str(STATIONS),
            "--keep-devices",
            str(devices),
            env=env,
        )
        yield {"result": result, "messages": sniffer.stop(), "devices": devices, "env": env, "pg_url": pg_url}
    finally:
        broker.stop()
        drop_pg_database(pg_url)


def _flashed_configs(devices: Path) -> dict[str, dict[str, object]]:
    configs = {}
    for folder in sorted(p for p in devices.iterdir() if p.is_dir()):
        config = folder / "etc" / "aziot" / "config.toml"
        assert config.is_file(), f"{folder.name}: no flashed config.toml"
        assert config.stat().st_mode & 0o077 == 0, f"{config} is readable by others"
        configs[folder.name] = tomllib.loads(config.read_text())
    return configs


def test_every_unit_is_assigned_with_its_own_config(run: dict[str, object]) -> None:
    result = run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    configs = _flashed_configs(run["devices"])
    assert len(configs) == UNITS
    for registration_id, config in configs.items():
        attestation = config["provisioning"]["attestation"]
        assert attestation["registration_id"] == registration_id
        assert len(base64.b64decode(attestation["symmetric_key"]["value"])) == 32


def test_audit_lists_the_units_in_every_format(run: dict[str, object]) -> None:
    env = run["env"]
    listed = edgeline("audit", "units", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    units = json.loads(listed.stdout)
    assert len(units) == UNITS
    for unit in units:
        assert unit["state"] == "assigned"
        for field in (
            "registration_id",
            "serial",
            "mac",
            "station",
            "device_id",
            "assigned_hub",
            "scanned_at",
            "station_scanned_at",
            "keyed_at",
            "enrolled_at",
            "config_issued_at",
            "flashed_at",
            "assigned_at",
        ):
            assert unit.get(field), f"{unit['registration_id']}: {field} missing"
    stations = {u["station"] for u in units}
    assert stations == {f"S{i + 1}" for i in range(STATIONS)}

    as_csv = edgeline("audit", "units", "--format", "csv", "--station", "S1", env=env)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows and all(r["station"] == "S1" for r in rows)
    assert len(rows) == sum(u["station"] == "S1" for u in units)

    table = edgeline("audit", "units", "--state", "assigned", env=env)
    assert table.returncode == 0 and units[0]["registration_id"][:20] in table.stdout

    one = edgeline("audit", "unit", units[0]["mac"].upper(), "--format", "json", env=env)
    assert one.returncode == 0 and units[0]["registration_id"] in one.stdout
    actors = {r["kind"]: r["actor"] for r in json.loads(one.stdout)["records"]}
    assert actors["unit.scanned"].startswith(f"station:{units[0]['station']}:")
    assert actors["unit.keyed"].startswith("keyer@worker:")

    verified = edgeline("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_no_key_in_clear_anywhere(run: dict[str, object]) -> None:
    keys = []
    for config in _flashed_configs(run["devices"]).values():
        value = config["provisioning"]["attestation"]["symmetric_key"]["value"]
        keys += [value, base64.b64decode(value).hex()]
    database = dump_postgres(run["pg_url"])
    bus = b"\n".join(payload for _, payload in run["messages"]).decode("utf-8", "replace")
    logs = run["result"].stdout + run["result"].stderr
    for key in keys:
        assert key not in database
        assert key not in bus
        assert key not in logs


def test_every_message_on_the_bus_matches_the_contract(run: dict[str, object]) -> None:
    messages = run["messages"]
    assert len(messages) >= UNITS * 6
    for topic, payload in messages:
        root = topic.split("/", 1)[0]
        validate_published(topic, payload, root=root)


def test_demo_on_the_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command: no broker, no database configured (embedded broker, SQLite)."""
    env = {name: "" for name in ("EDGELINE_DATABASE_URL", "EDGELINE_MQTT_URL", "EDGELINE_CONFIG")}
    result = edgeline("demo", "--units", "6", "--stations", "2", "--keep-devices", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PASS: 6/6 assigned" in result.stdout
    assert len(_flashed_configs(tmp_path)) == 6
