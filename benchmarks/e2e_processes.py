"""End-to-end throughput with every part in its own process, as on a real line.

Starts `edgeline emulator`, W copies of `edgeline up` (sharing the work through MQTT shared
subscriptions) and K `edgeline station run --simulate` processes against PostgreSQL and Mosquitto, waits
until every unit is `assigned`, and prints JSON: units/s, per-stage latency percentiles, peak RSS per role.

    python benchmarks/e2e_processes.py --units 400 --stations 4 --workers 2
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.e2e import PG_SERVER, STAGES, stage_latencies

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def _peak_rss_mib(process: subprocess.Popen[bytes]) -> float:
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _environment(
    args: argparse.Namespace, db_url: str, dps_port: int, key: str, scope: str
) -> dict[str, str]:
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


def _counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())  # type: ignore[arg-type]


def _stage_rows(db_url: str) -> list[dict[str, object]]:
    columns = ", ".join(f"{stage}_at" for stage in STAGES)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {columns} FROM units").fetchall()  # type: ignore[arg-type]
    return [dict(zip(STAGES, row, strict=True)) for row in rows]


def _register_station(name: str, workdir: Path, env: dict[str, str]) -> Path:
    """`edgeline station init` + `edgeline station add`, as an installer would."""
    key_file = workdir / f"{name}.key"
    cli = [sys.executable, "-m", "pipeline.cli", "station"]
    full_env = {**os.environ, **env}
    init = subprocess.run(
        [*cli, "init", "--key-file", str(key_file)],
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    subprocess.run(
        [*cli, "add", name, "--public-key", init.stdout.strip()],
        env=full_env,
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return key_file


def run(args: argparse.Namespace, db_url: str, workdir: Path) -> dict[str, object]:
    dps_port, key = _free_port(), base64.b64encode(secrets.token_bytes(32)).decode()
    scope = "0ne00" + secrets.token_hex(3).upper()
    env = _environment(args, db_url, dps_port, key, scope)
    processes: dict[str, list[subprocess.Popen[bytes]]] = {"emulator": [], "workers": [], "stations": []}
    try:
        processes["emulator"].append(
            _spawn(
                ["emulator", "--port", str(dps_port), "--id-scope", scope],
                {**env, "EDGELINE_EMULATOR_SERVICE_KEY": key},
                workdir / "emulator.log",
            )
        )
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "db", "upgrade"],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        time.sleep(1.0)
        for index in range(args.workers):
            worker_env = {**env, "EDGELINE_CLIENT_ID": f"bench-worker-{index}-{uuid.uuid4().hex[:6]}"}
            processes["workers"].append(_spawn(["up"], worker_env, workdir / f"up-{index}.log"))
        time.sleep(2.0)
        per_station = args.units // args.stations
        key_files = [_register_station(f"S{index + 1}", workdir, env) for index in range(args.stations)]
        for index, key_file in enumerate(key_files):
            name = f"S{index + 1}"
            processes["stations"].append(
                _spawn(
                    [
                        "station",
                        "run",
                        "--name",
                        name,
                        "--key-file",
                        str(key_file),
                        "--watch-dir",
                        str(workdir / name / "ports"),
                        "--simulate",
                        str(per_station),
                        "--devices-dir",
                        str(workdir / name / "devices"),
                        "--fixtures",
                        str(args.fixtures),
                    ],
                    env,
                    workdir / f"{name}.log",
                )
            )
        total = per_station * args.stations
        started = time.monotonic()
        while _counts(db_url).get("assigned", 0) < total and time.monotonic() - started < args.timeout:
            time.sleep(1.0)
        wall = time.monotonic() - started
        # Stations with --simulate exit when their devices are done; their RSS is not measured here.
        rss = {
            role: max((_peak_rss_mib(p) for p in procs), default=0.0)
            for role, procs in processes.items()
            if role != "stations"
        }
        rows = _stage_rows(db_url)
        firsts = [r["scanned"] for r in rows if r.get("scanned")]
        lasts = [r["assigned"] for r in rows if r.get("assigned")]
        span = (max(lasts) - min(firsts)).total_seconds() if firsts and lasts else float("nan")  # type: ignore[operator,type-var]
        return {
            "units": total,
            "stations": args.stations,
            "workers": args.workers,
            "mode": args.mode,
            "fixtures_per_station": args.fixtures,
            "assigned": len(lasts),
            "ok": len(lasts) == total,
            "wall_seconds": round(wall, 1),
            "first_scan_to_last_assigned_seconds": round(span, 2),
            "units_per_second": round(len(lasts) / span, 2) if span and span > 0 else 0.0,
            "stage_latency": stage_latencies(rows),  # type: ignore[arg-type]
            "peak_rss_mib_per_process": rss,
            "logs": str(workdir),
        }
    finally:
        for procs in processes.values():
            for process in procs:
                process.terminate()
        for procs in processes.values():
            for process in procs:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--stations", type=int, default=4)
    parser.add_argument("--fixtures", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="copies of `edgeline up`")
    parser.add_argument("--mode", choices=["group", "individual"], default="group")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    with scratch_database() as database_url:
        figures = run(args, database_url, Path(tempfile.mkdtemp(prefix="edgeline-bench-")))
    print(json.dumps(figures, indent=2, default=str))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
