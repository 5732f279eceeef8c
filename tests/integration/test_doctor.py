"""`edgeline doctor` against the real emulator (HTTP), PostgreSQL and Mosquitto.

A healthy setup passes; each broken setting is reported on a line of its own, all in one run.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import create_pg_database, drop_pg_database
from sqlalchemy import text

from pipeline.cli.main import main
from pipeline.config import load_settings
from pipeline.db import migrate
from pipeline.db.session import Database
from pipeline.doctor.checks import check_clock, skew_problem
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

if TYPE_CHECKING:
    from tests.conftest import Mosquitto

HUB = "doctor-hub.azure-devices.net"
pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    running = start_emulator(EmulatorConfig(hubs=(HUB,), cert_dir=str(tmp_path / "certs")))
    yield running
    running.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def healthy(
    mosquitto: Mosquitto, emulator: RunningEmulator, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A complete, working configuration in the environment (group created, schema at head)."""
    for name in [n for n in os.environ if n.startswith("EDGELINE_")]:
        monkeypatch.delenv(name)
    env = {
        "EDGELINE_MQTT_URL": mosquitto.url,
        "EDGELINE_DATABASE_URL": pg_url,
        "EDGELINE_DPS_CONNECTION_STRING": emulator.service_connection_string,
        "EDGELINE_DPS_ID_SCOPE": emulator.id_scope,
        "EDGELINE_DPS_GLOBAL_ENDPOINT": emulator.device_endpoint,
        "EDGELINE_IOT_HUB_CONNECTION_STRINGS": emulator.hub_connection_string(HUB),
        "EDGELINE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_file)  # the emulator's hubs speak HTTPS
    migrate.upgrade(pg_url)
    assert main(["group", "create"]) == 0
    return env


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["doctor"])
    return code, capsys.readouterr().out.strip().splitlines()


def server_autovacuum(url: str) -> str:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return str(conn.execute(text("SHOW autovacuum")).scalar())
    finally:
        db.dispose()


def test_a_healthy_setup_passes(healthy: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = doctor(capsys)
    assert code == 0, lines
    if server_autovacuum(healthy["EDGELINE_DATABASE_URL"]) == "on":
        assert lines == ["edgeline doctor: 0 problem(s), 0 warning(s)"]
    else:  # a server tuned for throwaway test databases: the line runs, the doctor says what it costs
        assert len(lines) == 2 and lines[1] == "edgeline doctor: 0 problem(s), 1 warning(s)", lines
        assert lines[0].startswith("warning: database: PostgreSQL autovacuum is off: ")
        assert "set autovacuum = on" in lines[0]


def test_every_broken_setting_is_reported_at_once(
    healthy: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    free_tcp_port: int,
    emulator: RunningEmulator,
) -> None:
    other_key = base64.b64encode(os.urandom(32)).decode()
    unmigrated = create_pg_database()
    try:
        monkeypatch.setenv("EDGELINE_MQTT_URL", f"mqtt://127.0.0.1:{free_tcp_port}")
        monkeypatch.setenv("EDGELINE_DATABASE_URL", unmigrated)
        monkeypatch.setenv(
            "EDGELINE_DPS_CONNECTION_STRING",
            emulator.service_connection_string.rsplit("SharedAccessKey=", 1)[0]
            + f"SharedAccessKey={other_key}",
        )
        monkeypatch.delenv("EDGELINE_DPS_GLOBAL_ENDPOINT")  # Azure's default with the emulator's service
        monkeypatch.setenv(
            "EDGELINE_IOT_HUB_CONNECTION_STRINGS",
            emulator.hub_connection_string(HUB).rsplit("SharedAccessKey=", 1)[0]
            + f"SharedAccessKey={other_key}",
        )
        code, lines = doctor(capsys)
    finally:
        drop_pg_database(unmigrated)
    assert code == 1
    problems = [line for line in lines if line.startswith("problem: ")]
    text = "\n".join(problems)
    assert "is Azure's but the DPS service is" in text  # endpoint pairing
    assert f"127.0.0.1:{free_tcp_port}" in text and "connection refused" in text  # broker
    assert "schema at nothing" in text and "edgeline db upgrade" in text  # database
    assert "DPS: " in text and "EDGELINE_DPS_CONNECTION_STRING" in text  # wrong DPS key
    assert f"IoT hub {emulator.hub_connection_string(HUB).split(';')[0].split('=')[1]}" in text  # hub key
    assert len(problems) >= 5, lines
    assert lines[-1].startswith(f"edgeline doctor: {len(problems)} problem(s)")
    assert other_key not in "\n".join(lines)


def test_a_group_key_that_differs_from_dps_is_reported(
    healthy: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    emulator: RunningEmulator,
    tmp_path: Path,
) -> None:
    emulator.reset()  # DPS forgets the group; another database creates it again with other keys
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    migrate.upgrade(other_db)
    monkeypatch.setenv("EDGELINE_DATABASE_URL", other_db)
    assert main(["group", "create"]) == 0
    monkeypatch.setenv("EDGELINE_DATABASE_URL", healthy["EDGELINE_DATABASE_URL"])
    code, lines = doctor(capsys)
    assert code == 1
    assert any(line.startswith("problem: DPS: ") and "edgeline-default" in line for line in lines), lines


def test_clock_skew_against_the_dps_date_header(healthy: dict[str, str]) -> None:
    settings = load_settings()
    assert check_clock(settings) is None  # same host, same clock
    problem = check_clock(settings, now=lambda: datetime.now(UTC) + timedelta(minutes=10))
    assert problem is not None and "NTP" in problem.text
    assert re.search(r"is (599|600|601) s ahead of DPS", problem.text), problem.text  # Date: whole seconds
    assert skew_problem(-120.0, "https://x") is not None and skew_problem(30.0, "https://x") is None
