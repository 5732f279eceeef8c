"""Benchmark: what one Sparkplug round costs the database (SqlLineState.snapshot) on a big units table.

Creates a scratch PostgreSQL database (or uses --url), migrates it, inserts --units units spread over
--stations stations and every state (about 2 % failed), then times `SqlLineState(db, line).snapshot()`
and prints one JSON object: {units, stations, runs, snapshot_ms_p50, snapshot_ms_max, plan} where plan
says whether PostgreSQL answered the per-station counts from the (line, station, state) index alone.
A figure, not a pass/fail test (architecture §10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg

from pipeline.db import migrate
from pipeline.db.line_state import SqlLineState
from pipeline.db.session import Database

SERVER = "postgresql://postgres@127.0.0.1:5432"
STATES = ("assigned", "online", "flashed", "config_issued", "keyed", "scanned", "failed", "not_online")


def fill(url: str, units: int, stations: int) -> None:
    """Insert `units` rows with generate_series (states weighted towards finished units)."""
    states = "ARRAY[" + ",".join(f"'{s}'" for s in STATES) + "]"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""
            INSERT INTO units (registration_id, serial, mac, line, station, product, mode, state,
                               failure_stage, failure_reason, attempts, rework_count, checks,
                               created_at, updated_at)
            SELECT 'sn-' || n || '-mac-x', 'SN' || n, '02:00:00:00:00:00', 'line1',
                   'S' || (n % {stations}), 'default', 'group', s, f, CASE WHEN f IS NULL THEN NULL ELSE
                   'DPS refused the enrollment of unit ' || n END, 0, 0, 0,
                   now(), now() - (n || ' s')::interval
            FROM generate_series(1, {units}) AS n,
                 LATERAL (SELECT CASE WHEN n % 50 = 0 THEN 'failed' WHEN n % 97 = 0 THEN 'not_online'
                                 ELSE ({states})[1 + (n % 6)] END AS s) AS pick,
                 LATERAL (SELECT CASE WHEN pick.s IN ('failed', 'not_online') THEN 'enroll' END AS f) AS stage
            """
        )
        conn.execute("VACUUM ANALYZE units")  # as autovacuum would: sets the visibility map


def plan(url: str) -> str:
    """Whether the grouped count is an index-only scan of ix_units_line_station_state."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN SELECT station, state, count(*) FROM units WHERE line = 'line1' GROUP BY station, state"
        ).fetchall()
    text = " ".join(r[0] for r in rows)
    return "index-only scan" if "Index Only Scan using ix_units_line_station_state" in text else text[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a scratch one, dropped after)")
    args = parser.parse_args()
    name = f"edgeline_bench_{uuid.uuid4().hex[:8]}"
    url = args.url or f"{SERVER}/{name}"
    if not args.url:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(url)
        fill(url, args.units, args.stations)
        database = Database(url)
        reader = SqlLineState(database, "line1")
        reader.snapshot()  # warm the pool and the plan cache
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            snapshot = reader.snapshot()
            times.append((time.perf_counter() - started) * 1000)
        database.dispose()
        assert sum(sum(s.counts.values()) for s in snapshot.stations.values()) == args.units
        figures = {
            "units": args.units,
            "stations": args.stations,
            "runs": args.runs,
            "snapshot_ms_p50": round(statistics.median(times), 2),
            "snapshot_ms_max": round(max(times), 2),
            "plan": plan(url),
        }
        print(json.dumps(figures))
    finally:
        if not args.url:
            with psycopg.connect(SERVER, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
