"""Every part as its own process, as on a real line; `edgeline up` is SIGKILLed mid-run and restarted.

The emulator, the workers and a station with simulated devices run as separate `edgeline` processes
against a private Mosquitto and a private PostgreSQL database. After the crash and restart every unit
still reaches `assigned`, exactly once enrolled (individual mode: one enrollment per unit in DPS, one
`unit.enrolled` audit record per unit).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import Mosquitto, create_pg_database, drop_pg_database, free_port, wait_for_port
from e2e_helpers import REPO, edgeline

UNITS = 16
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


def _spawn(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def _states(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def line(tmp_path: Path) -> Iterator[dict[str, object]]:
    pg_url = create_pg_database()
    broker = Mosquitto(tmp_path)
    broker.start()
    dps_port = free_port()
    service_key = base64.b64encode(secrets.token_bytes(32)).decode()
    scope = "0ne00" + secrets.token_hex(3).upper()
    env = {
        "EDGELINE_DATABASE_URL": pg_url,
        "EDGELINE_MQTT_URL": broker.url,
        "EDGELINE_TOPIC_ROOT": f"kill-{secrets.token_hex(4)}",
        "EDGELINE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "EDGELINE_DPS_CONNECTION_STRING": f"HostName=http://127.0.0.1:{dps_port};"
        f"SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={service_key}",
        "EDGELINE_DPS_ID_SCOPE": scope,
        "EDGELINE_DPS_GLOBAL_ENDPOINT": f"http://127.0.0.1:{dps_port}",
        "EDGELINE_ENROLLMENT_MODE": "individual",
        "EDGELINE_CONFIRM_INTERVAL_SECONDS": "0.5",
        "EDGELINE_CONFIRM_BACKOFF_INITIAL_SECONDS": "0.5",
        "EDGELINE_CONFIRM_BACKOFF_MAX_SECONDS": "3",
        "EDGELINE_RECONCILE_INTERVAL_SECONDS": "1",
        "EDGELINE_RECONCILE_STUCK_SECONDS": "6",
        "EDGELINE_CLIENT_ID": f"kill-worker-{secrets.token_hex(3)}",
    }
    processes: list[subprocess.Popen[bytes]] = []
    emulator = _spawn(
        "emulator",
        "--port",
        str(dps_port),
        "--id-scope",
        scope,
        env={**env, "EDGELINE_EMULATOR_SERVICE_KEY": service_key},
        log=tmp_path / "emulator.log",
    )
    processes.append(emulator)
    try:
        wait_for_port(dps_port, timeout=15)
        yield {"env": env, "pg_url": pg_url, "tmp": tmp_path, "processes": processes, "dps_port": dps_port}
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        broker.stop()
        drop_pg_database(pg_url)


def test_sigkill_of_the_workers_loses_and_duplicates_nothing(line: dict[str, object]) -> None:
    env, tmp, pg_url = line["env"], line["tmp"], line["pg_url"]
    processes: list[subprocess.Popen[bytes]] = line["processes"]  # type: ignore[assignment]
    assert edgeline("db", "upgrade", env=env).returncode == 0
    init = edgeline("station", "init", "--key-file", str(tmp / "S1.key"), env=env)
    assert init.returncode == 0, init.stderr
    added = edgeline("station", "add", "S1", f"--public-key={init.stdout.strip()}", env=env)
    assert added.returncode == 0, added.stderr

    workers = _spawn("up", env=env, log=tmp / "up-1.log")
    processes.append(workers)
    station = _spawn(
        "station",
        "run",
        "--name",
        "S1",
        "--key-file",
        str(tmp / "S1.key"),
        "--watch-dir",
        str(tmp / "ports"),
        "--simulate",
        str(UNITS),
        "--devices-dir",
        str(tmp / "devices"),
        env=env,
        log=tmp / "station.log",
    )
    processes.append(station)

    _wait(lambda: sum(_states(pg_url).values()) >= 4, 120, "the first scans")
    workers.send_signal(signal.SIGKILL)
    workers.wait(10)
    time.sleep(1.0)
    restarted = _spawn("up", env=env, log=tmp / "up-2.log")
    processes.append(restarted)

    _wait(
        lambda: _states(pg_url).get("assigned", 0) == UNITS,
        360,
        f"{UNITS} assigned units; states now {_states(pg_url)}; see logs in {tmp}",
    )
    assert station.wait(180) == 0, (tmp / "station.log").read_text()[-3000:]

    with psycopg.connect(pg_url) as conn:
        enrolled = conn.execute(
            "SELECT registration_id, count(*) FROM audit_log "
            "WHERE kind = 'unit.enrolled' GROUP BY registration_id"
        ).fetchall()
        units = conn.execute("SELECT count(*) FROM units").fetchone()
    assert units == (UNITS,)
    assert len(enrolled) == UNITS and all(count == 1 for _, count in enrolled), enrolled
    state = httpx.get(f"http://127.0.0.1:{line['dps_port']}/_emulator/state").json()
    assert len(state["dps"]["enrollments"]) == UNITS
    assert sum(len(devices) for devices in state["hubs"].values()) == UNITS
