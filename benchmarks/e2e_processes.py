"""End-to-end throughput with every part in its own process, as on a real line.

Starts `edgeline emulator`, W copies of `edgeline up` (sharing the work through MQTT shared
subscriptions) and K `edgeline station run --simulate` processes against PostgreSQL and Mosquitto, waits
until every unit is `assigned`, and prints JSON: units/s, per-stage latency percentiles, peak RSS per role.

    python benchmarks/e2e_processes.py --units 400 --stations 4 --workers 2
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.e2e import stage_latencies
from benchmarks.processes import (
    free_port,
    line_environment,
    peak_rss_mib,
    register_station,
    scratch_database,
    spawn,
    stage_rows,
    unit_counts,
    wait_listening,
)

REPO = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace, db_url: str, workdir: Path) -> dict[str, object]:
    dps_port, key = free_port(), base64.b64encode(secrets.token_bytes(32)).decode()
    scope = "0ne00" + secrets.token_hex(3).upper()
    env = line_environment(args, db_url, dps_port, key, scope)
    processes: dict[str, list[subprocess.Popen[bytes]]] = {"emulator": [], "workers": [], "stations": []}
    try:
        processes["emulator"].append(
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
            cwd=REPO,
        )
        wait_listening(dps_port, processes["emulator"][0])
        for index in range(args.workers):
            worker_env = {**env, "EDGELINE_CLIENT_ID": f"bench-worker-{index}-{uuid.uuid4().hex[:6]}"}
            processes["workers"].append(spawn(["up"], worker_env, workdir / f"up-{index}.log"))
        time.sleep(2.0)
        per_station = args.units // args.stations
        key_files = [register_station(f"S{index + 1}", workdir, env) for index in range(args.stations)]
        for index, key_file in enumerate(key_files):
            name = f"S{index + 1}"
            processes["stations"].append(
                spawn(
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
        while unit_counts(db_url).get("assigned", 0) < total and time.monotonic() - started < args.timeout:
            time.sleep(1.0)
        wall = time.monotonic() - started
        # Stations with --simulate exit when their devices are done; their RSS is not measured here.
        rss = {
            role: max((peak_rss_mib(p) for p in procs), default=0.0)
            for role, procs in processes.items()
            if role != "stations"
        }
        rows = stage_rows(db_url)
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
