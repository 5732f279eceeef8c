"""End-to-end throughput of the line: N simulated units through every stage, figures as JSON.

Runs the same machinery as `edgeline demo` (stations on pseudo-terminals, central workers, the DPS
emulator) against PostgreSQL and Mosquitto, then reads the stage timestamps back from the database.
All parts share this one process, so peak RSS covers workers, stations, simulators and emulator.

    python benchmarks/e2e.py --units 200 --stations 4
    python benchmarks/e2e.py --units 2000 --stations 8 --mode individual --quota-check

Defaults: a fresh PostgreSQL database on 127.0.0.1:5432 (created and dropped), Mosquitto at
mqtt://127.0.0.1:1883 (a private topic root, so it can share the broker).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from pipeline.config import load_settings
from pipeline.db.audit import audit_records, units_query
from pipeline.db.session import Database
from pipeline.demo import DemoOptions, run_demo

STAGES = ("scanned", "keyed", "enrolled", "config_issued", "flashed", "assigned")
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "p50_ms": round(cut[49] * 1000, 1),
        "p95_ms": round(cut[94] * 1000, 1),
        "p99_ms": round(cut[98] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def stage_latencies(rows: list[dict[str, datetime | None]]) -> dict[str, dict[str, float]]:
    """Latency of each stage transition and of the whole way, over all units that got there."""
    result: dict[str, dict[str, float]] = {}
    for before, after in [*itertools.pairwise(STAGES), ("scanned", "assigned")]:
        spans = [(r[after] - r[before]).total_seconds() for r in rows if r.get(before) and r.get(after)]  # type: ignore[operator]
        result[f"{before}->{after}"] = percentiles(spans)
    return result


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)  # "skipped: max instances" by design
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--stations", type=int, default=4)
    parser.add_argument("--fixtures", type=int, default=4)
    parser.add_argument("--mode", choices=["group", "individual"], default="group")
    parser.add_argument("--database-url", help="default: a fresh database on the local PostgreSQL")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--timeout", type=float)
    args = parser.parse_args()

    own_db = args.database_url is None
    db_name = f"edgeline_bench_{uuid.uuid4().hex[:8]}"
    url = args.database_url or f"{PG_SERVER}/{db_name}"
    if own_db:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')  # type: ignore[arg-type]
    try:
        settings = load_settings(env={}, database_url=url, mqtt_url=args.mqtt_url, enrollment_mode=args.mode)
        started = time.monotonic()
        report = run_demo(
            settings,
            DemoOptions(
                units=args.units, stations=args.stations, fixtures=args.fixtures, timeout=args.timeout
            ),
            lambda snap: None,
        )
        wall = time.monotonic() - started
        db = Database(url)
        ours = set(report.registration_ids)
        views = [v for v in units_query(db) if v.registration_id in ours]
        failures = [r for r in audit_records(db) if r.kind == "unit.failed" and r.registration_id in ours]
        db.dispose()
        rows = [v.stage_times for v in views]
        firsts = [r["scanned"] for r in rows if r.get("scanned")]
        lasts = [r["assigned"] for r in rows if r.get("assigned")]
        span = (max(lasts) - min(firsts)).total_seconds() if firsts and lasts else float("nan")  # type: ignore[type-var]
        figures = {
            "units": args.units,
            "stations": args.stations,
            "fixtures_per_station": args.fixtures,
            "mode": args.mode,
            "assigned": report.counts.get("assigned", 0),
            "ok": report.ok,
            "wall_seconds": round(wall, 2),
            "first_scan_to_last_assigned_seconds": round(span, 2),
            "units_per_second": round(len(lasts) / span, 2) if lasts and span > 0 else 0.0,
            "stage_latency": stage_latencies(rows),
            # Every failure a unit went through on its way (retried ones included), by stage and reason.
            "unit_failures": len(failures),
            "failure_reasons": sorted(
                {f"{r.detail.get('stage')}: {str(r.detail.get('reason'))[:120]}" for r in failures}
            )[:10],
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "database": "postgresql",
            "broker": args.mqtt_url,
        }
        print(json.dumps(figures, indent=2))
        return 0 if report.ok else 1
    finally:
        if own_db:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
