"""Start-up failures and closed pipes end in one line on stderr, never a traceback.

The commands run as the operator runs them: `python -m pipeline.cli` in a subprocess, settings from
EDGELINE_* variables, a real SQLite file, a real Mosquitto broker and a real pipe.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Mosquitto, free_port

from pipeline.crypto.sealing import Sealer
from pipeline.db import migrate
from pipeline.db.session import Database
from pipeline.domain.keys import SecretKey
from pipeline.keystore.sealed import group_key_context
from pipeline.service.unit_of_work import GroupRecord

TIMEOUT = 60
DPS = "HostName=127.0.0.1:{port};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={key}"


def edgeline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGELINE_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env={**clean, "EDGELINE_STATE_DIR": str(cwd / ".edgeline"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_a_malformed_database_url_is_one_line_without_the_url(tmp_path: Path) -> None:
    for url in ("not a url at all", "nosuchdb://scott:tiger@host/db"):
        done = edgeline("db", "current", cwd=tmp_path, env={"EDGELINE_DATABASE_URL": url})
        line = one_line(done)
        assert done.returncode == 2 and "EDGELINE_DATABASE_URL" in line and "tiger" not in line


def test_a_database_that_is_down_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/edgeline"
    done = edgeline("audit", "units", cwd=tmp_path, env={"EDGELINE_DATABASE_URL": url})
    line = one_line(done)
    assert done.returncode == 1 and "unavailable" in line and "secret" not in line


def test_up_without_a_broker_setting_or_with_the_broker_down_is_one_line(tmp_path: Path) -> None:
    base = {"EDGELINE_MASTER_KEY": key(), "EDGELINE_DPS_ID_SCOPE": "0ne00000001"}
    done = edgeline("up", cwd=tmp_path, env=base)
    # every missing setting at once, one line each, no traceback
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert any("EDGELINE_MQTT_URL" in line for line in lines)
    assert any("EDGELINE_DPS_CONNECTION_STRING" in line for line in lines)
    migrate.upgrade(f"sqlite:///{tmp_path / '.edgeline' / 'edgeline.db'}")
    dps_port = free_port()
    down = {
        **base,
        "EDGELINE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
        "EDGELINE_DPS_CONNECTION_STRING": DPS.format(port=dps_port, key=key()),
        "EDGELINE_DPS_GLOBAL_ENDPOINT": f"http://127.0.0.1:{dps_port}",
    }
    done = edgeline("up", cwd=tmp_path, env=down)
    assert done.returncode == 1 and "127.0.0.1" in one_line(done)


@pytest.mark.mosquitto
def test_up_with_keys_sealed_under_another_master_key_names_the_setting(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    url = f"sqlite:///{tmp_path / '.edgeline' / 'edgeline.db'}"
    migrate.upgrade(url)
    sealer = Sealer(SecretKey.from_base64(key(), what="test master key"))
    db = Database(url)
    try:
        with db.uow() as uow:
            uow.groups.put(
                GroupRecord(
                    group_id="edgeline-default",
                    product="default",
                    sealed_primary_key=sealer.seal_key(
                        SecretKey.generate(), context=group_key_context("edgeline-default", "primary")
                    ),
                    sealed_secondary_key=sealer.seal_key(
                        SecretKey.generate(), context=group_key_context("edgeline-default", "secondary")
                    ),
                    created_at=datetime.now(UTC),
                )
            )
            uow.commit()
    finally:
        db.dispose()
    env = {
        "EDGELINE_MASTER_KEY": key(),  # not the one the group keys were sealed with
        "EDGELINE_MQTT_URL": mosquitto.url,
        "EDGELINE_DPS_CONNECTION_STRING": DPS.format(port=(dps_port := free_port()), key=key()),
        "EDGELINE_DPS_GLOBAL_ENDPOINT": f"http://127.0.0.1:{dps_port}",
        "EDGELINE_DPS_ID_SCOPE": "0ne00000001",
    }
    done = edgeline("up", cwd=tmp_path, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the INFO lines of the broker connection
    assert line.startswith("edgeline up: ") and done.returncode == 1
    assert "EDGELINE_MASTER_KEY" in line and "different master key" in line


def test_audit_on_a_folder_without_a_database_says_to_migrate(tmp_path: Path) -> None:
    done = edgeline("audit", "units", cwd=tmp_path)
    assert done.returncode == 1 and "edgeline db upgrade" in one_line(done)


def test_unknown_filters_name_the_valid_choices(tmp_path: Path) -> None:
    assert edgeline("db", "upgrade", cwd=tmp_path).returncode == 0
    done = edgeline("audit", "units", "--state", "bogus", cwd=tmp_path)
    assert done.returncode == 2 and "assigned" in done.stderr and "bogus" in done.stderr
    done = edgeline("audit", "units", "--line", "line9", cwd=tmp_path)
    assert done.returncode == 2 and "line9" in one_line(done) and "no units yet" in one_line(done)
    done = edgeline("audit", "export", "--since", "yesterday", cwd=tmp_path)
    assert done.returncode == 2 and "ISO 8601" in done.stderr


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    assert edgeline("db", "upgrade", cwd=tmp_path).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGELINE_")}
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already exited: every write gets EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "audit", "export", "--what", "records"],
            cwd=tmp_path,
            env={**clean, "EDGELINE_STATE_DIR": str(tmp_path / ".edgeline")},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_audit_export_into_head_through_a_shell_pipe_is_quiet(tmp_path: Path) -> None:
    assert edgeline("db", "upgrade", cwd=tmp_path).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGELINE_")}
    done = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m pipeline.cli audit export --what records | head -c0"],
        cwd=tmp_path,
        env={**clean, "EDGELINE_STATE_DIR": str(tmp_path / ".edgeline")},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
