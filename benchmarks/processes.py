"""Process plumbing shared by the benchmarks that run edgeline as separate processes.

Spawning `python -m pipeline.cli ...` with a log file, the environment of a benchmark line (emulator,
database, private topic root), a scratch PostgreSQL database, station registration through the CLI as
an installer does it, and the database reads the reports are made of.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from benchmarks.e2e import PG_SERVER, STAGES
from benchmarks.measure import status_mib

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the emulator or a private broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until `process` accepts TCP connections on 127.0.0.1:`port` (a loaded machine may take
    seconds to start the emulator, and `edgeline up` refuses to start without DPS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args!r} exited with {process.returncode} before listening"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s") from None
            time.sleep(0.1)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m pipeline.cli ARGS` from the repository, its output in `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def peak_rss_mib(process: subprocess.Popen[bytes]) -> float:
    """The process's peak resident memory so far (VmHWM), 0.0 once it has gone."""
    return status_mib(process.pid, "VmHWM")


def line_environment(
    args: argparse.Namespace, db_url: str, dps_port: int, key: str, scope: str
) -> dict[str, str]:
    """Settings of a benchmark line: its database, the emulator, a private topic root, fast confirmer."""
    return {
        "EDGELINE_DATABASE_URL": db_url,
        "EDGELINE_MQTT_URL": args.mqtt_url,
        "EDGELINE_TOPIC_ROOT": f"bench-{secrets.token_hex(4)}",
        "EDGELINE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "EDGELINE_DPS_CONNECTION_STRING": f"HostName=http://127.0.0.1:{dps_port};"
        f"SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={key}",
        "EDGELINE_DPS_ID_SCOPE": scope,
        "EDGELINE_DPS_GLOBAL_ENDPOINT": f"http://127.0.0.1:{dps_port}",
        "EDGELINE_ENROLLMENT_MODE": args.mode,
        "EDGELINE_LOG_LEVEL": "WARNING",
        "EDGELINE_CONFIRM_INTERVAL_SECONDS": "0.5",
        "EDGELINE_CONFIRM_BACKOFF_INITIAL_SECONDS": "1",
        "EDGELINE_CONFIRM_BACKOFF_MAX_SECONDS": "5",
    }


def unit_counts(db_url: str) -> dict[str, int]:
    """Units per state."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())  # type: ignore[arg-type]


def stage_rows(db_url: str) -> list[dict[str, object]]:
    """Every unit's stage timestamps, for stage latencies."""
    columns = ", ".join(f"{stage}_at" for stage in STAGES)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {columns} FROM units").fetchall()  # type: ignore[arg-type]
    return [dict(zip(STAGES, row, strict=True)) for row in rows]


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database for one benchmark run; yield its URL, drop it after."""
    db_name = f"edgeline_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')  # type: ignore[arg-type]
    try:
        yield f"{PG_SERVER}/{db_name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')  # type: ignore[arg-type]


def register_station(name: str, workdir: Path, env: dict[str, str]) -> Path:
    """`edgeline station init` + `station add --public-key=KEY` (a key may start with '-')."""
    key_file = workdir / f"{name}.key"
    cli, full_env = [sys.executable, "-m", "pipeline.cli", "station"], {**os.environ, **env}
    init = subprocess.run(
        [*cli, "init", "--key-file", str(key_file)], env=full_env, capture_output=True, text=True, check=True
    )
    subprocess.run(
        [*cli, "add", name, f"--public-key={init.stdout.strip()}"],
        env=full_env,
        check=True,
        capture_output=True,
    )
    return key_file
