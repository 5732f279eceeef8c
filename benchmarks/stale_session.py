"""A worker SIGKILLed mid-run and replaced: how long do units take, scan -> assigned? (issue #8 §2)

Starts its own Mosquitto (max_queued_messages 0, persistence), the emulator, two `edgeline up` and one
`edgeline station run --simulate` against a fresh PostgreSQL database. After `--kill-after` units were
scanned it SIGKILLs worker 1 and starts its replacement: with a fresh client id (`--scenario fresh-id`,
as a rescheduled container would), with its own id back (`same-id`, as systemd restarting
`edgeline-up@1` or the default instance slot would), or not at all (`undisturbed`). Prints JSON:
scan->assigned p50/p95/max, re-drives by the reconciler, configs issued, and how many messages the
broker still held for the dead session at the end.

    python benchmarks/stale_session.py --scenario undisturbed
    python benchmarks/stale_session.py --scenario fresh-id --session-expiry 604800   # old behaviour
    python benchmarks/stale_session.py --scenario fresh-id --session-expiry 60       # the 60 s of before
    python benchmarks/stale_session.py --scenario fresh-id                           # default 0 s
    python benchmarks/stale_session.py --scenario same-id
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.e2e import stage_latencies
from benchmarks.processes import (
    free_port,
    line_environment,
    register_station,
    scratch_database,
    spawn,
    stage_rows,
    unit_counts,
    wait_listening,
)
from pipeline.bus.paho import PahoBus, PahoOptions
from pipeline.bus.topics import Topics


def _start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence true\n"
        f"persistence_location {workdir}/\nlog_dest file {workdir / 'mosquitto.log'}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)])
    time.sleep(0.5)
    return process, f"mqtt://127.0.0.1:{port}"


def _held_for(url: str, client_id: str, topic_root: str, seconds: float = 3.0) -> int:
    """How many messages the broker delivers to `client_id`'s old session right after it reconnects.

    Only the workers' (never retained) event topics count: `#` would also count retained station status.
    """
    received: list[int] = []
    lock = threading.Lock()

    def count(message: Any) -> None:
        with lock:
            received.append(1)

    bus = PahoBus.from_url(url, client_id, PahoOptions(protocol="5", session_expiry_seconds=0))
    topics = Topics(topic_root)
    for topic_filter in (topics.all_station_events(), topics.all_unit_events()):
        bus.subscribe(topic_filter, count, shared_group="edgeline-workers")  # never acks: only counts
    bus.connect(10)
    time.sleep(seconds)
    bus.close()
    return len(received)


def _audit_kinds(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT kind, count(*) FROM audit_log GROUP BY kind").fetchall()
    return {str(kind): int(n) for kind, n in rows}


def _after(rows: list[dict[str, Any]], killed_at: float | None, expiry: int) -> dict[str, float] | None:
    """scan->assigned of the units scanned once the dead session had expired (None: no kill / none)."""
    if killed_at is None:
        return None
    later = [r for r in rows if r.get("scanned") and r["scanned"].timestamp() > killed_at + expiry]
    return stage_latencies(later)["scanned->assigned"] if later else None


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def run(args: argparse.Namespace, db_url: str, workdir: Path) -> dict[str, object]:
    """Run one scenario and return its figures."""
    broker, args.mqtt_url = _start_mosquitto(workdir)
    dps_port, key = free_port(), base64.b64encode(secrets.token_bytes(32)).decode()
    scope = "0ne00" + secrets.token_hex(3).upper()
    env = {
        **line_environment(args, db_url, dps_port, key, scope),
        "EDGELINE_MQTT_SESSION_EXPIRY_SECONDS": str(args.session_expiry),
        "EDGELINE_LOG_LEVEL": "INFO",
        **({"EDGELINE_RECONCILE_STUCK_SECONDS": str(args.reconcile_stuck)} if args.reconcile_stuck else {}),
    }
    processes: list[subprocess.Popen[bytes]] = [broker]
    ids = [f"stale-{uuid.uuid4().hex[:6]}-w{i}" for i in range(2)]
    try:
        processes.append(
            spawn(
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
        )
        wait_listening(dps_port, processes[-1])
        workers = [spawn(["up"], {**env, "EDGELINE_CLIENT_ID": cid}, workdir / f"{cid}.log") for cid in ids]
        processes.extend(workers)
        time.sleep(3.0)
        key_file = register_station("S1", workdir, env)
        processes.append(
            spawn(
                [
                    "station",
                    "run",
                    "--name",
                    "S1",
                    "--key-file",
                    str(key_file),
                    "--watch-dir",
                    str(workdir / "ports"),
                    "--simulate",
                    str(args.units),
                    "--devices-dir",
                    str(workdir / "devices"),
                    "--fixtures",
                    str(args.fixtures),
                ],
                env,
                workdir / "S1.log",
            )
        )
        killed_at = None
        if args.scenario != "undisturbed":
            _wait(lambda: sum(unit_counts(db_url).values()) >= args.kill_after, args.timeout)
            workers[1].send_signal(signal.SIGKILL)
            workers[1].wait(10)
            killed_at = time.time()
            replacement = ids[1] if args.scenario == "same-id" else f"{ids[1]}-fresh"
            processes.append(
                spawn(["up"], {**env, "EDGELINE_CLIENT_ID": replacement}, workdir / f"{replacement}.log")
            )
        done = _wait(lambda: unit_counts(db_url).get("assigned", 0) >= args.units, args.timeout)
        rows = stage_rows(db_url)
        held = None
        if args.scenario == "fresh-id" and killed_at is not None:
            if args.session_expiry < 300:  # look after the dead session's expiry, not before
                time.sleep(max(killed_at + args.session_expiry + 2 - time.time(), 0))
            held = _held_for(args.mqtt_url, ids[1], env["EDGELINE_TOPIC_ROOT"])
        kinds = _audit_kinds(db_url)
        return {
            "scenario": args.scenario,
            "session_expiry_seconds": args.session_expiry,
            "units": args.units,
            "assigned": unit_counts(db_url).get("assigned", 0),
            "all_assigned": done,
            "states": unit_counts(db_url),
            "scan_to_assigned": stage_latencies(rows)["scanned->assigned"],  # type: ignore[arg-type]
            "scan_to_assigned_scanned_after_expiry": _after(rows, killed_at, args.session_expiry),
            "redriven": kinds.get("unit.redriven", 0),
            "audit_kinds": kinds,
            "held_for_dead_session_at_end": held,
            "killed_at_unix": killed_at,
            "logs": str(workdir),
        }
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=["undisturbed", "fresh-id", "same-id"], default="fresh-id")
    parser.add_argument("--session-expiry", type=int, default=0, help="seconds (default: the setting's 0)")
    parser.add_argument("--units", type=int, default=60)
    parser.add_argument("--fixtures", type=int, default=4)
    parser.add_argument("--kill-after", type=int, default=8, help="units scanned before the kill")
    parser.add_argument("--mode", choices=["group", "individual"], default="group")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--reconcile-stuck", type=float, default=0, help="seconds (default: the setting's)")
    args = parser.parse_args()
    with scratch_database() as database_url:
        figures = run(args, database_url, Path(tempfile.mkdtemp(prefix="edgeline-stale-")))
    print(json.dumps(figures, indent=2, default=str))
    return 0 if figures["all_assigned"] else 1


if __name__ == "__main__":
    sys.exit(main())
