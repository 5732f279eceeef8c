"""Benchmark of the audit API and dashboard on a 100,000-unit line in PostgreSQL.

Seeds a private database with generated rows (SQL `generate_series`: units spread over 48 h, 12 stations,
4 ports each, 90 % assigned, 5 % failed with 5 reasons, the rest in flight; two audit records per unit),
starts `edgeline web` as its own process, then times every API query and the dashboard's live view
(p50/p95 over N requests each, after one warm-up) and streams an export of all rows, reading the web
process's peak RSS (VmHWM) before and after. Prints JSON.

    .venv/bin/python benchmarks/web_api.py --units 100000 --repeat 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pipeline.db import migrate

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
REPO = Path(__file__).resolve().parents[1]

SEED_UNITS = """
INSERT INTO units (registration_id, serial, mac, line, station, port, product, mode, state,
  failure_stage, failure_reason, failure_retryable, attempts, rework_count, checks,
  scanned_at, keyed_at, enrolled_at, config_issued_at, flashed_at, assigned_at, failed_at,
  created_at, updated_at)
SELECT 'sn-b' || lpad(i::text, 7, '0') || '-mac-' || replace(mac, ':', '-'), 'B' || lpad(i::text, 7, '0'),
  mac, 'line' || (1 + i %% 3), 'S' || (1 + i %% 12), '/dev/ttyUSB' || (i / 12 %% 4), 'default', 'group',
  state,
  CASE WHEN state = 'failed' THEN 'flash' END,
  CASE WHEN state = 'failed' THEN (ARRAY['config read-back mismatch', 'device did not answer',
    'serial timeout', 'DPS 429 retries exhausted', 'identity conflict'])[1 + (i / 100) %% 5] END,
  CASE WHEN state = 'failed' THEN false END, 0, 0, 0,
  t, t + interval '1 s', t + interval '2 s', t + interval '3 s',
  CASE WHEN state IN ('flashed', 'assigned') THEN t + interval '5 s' END,
  CASE WHEN state = 'assigned' THEN t + interval '20 s' END,
  CASE WHEN state = 'failed' THEN t + interval '6 s' END,
  t, t + interval '20 s'
FROM (
  SELECT i, now() - interval '48 hours' + i * (interval '48 hours' / %(n)s) AS t,
    '02:bb:' || substr(h, 1, 2) || ':' || substr(h, 3, 2) || ':' || substr(h, 5, 2) || ':' || substr(h, 7, 2)
      AS mac,
    CASE WHEN i %% 100 < 90 THEN 'assigned' WHEN i %% 100 < 95 THEN 'failed' WHEN i %% 100 < 97 THEN 'flashed'
         WHEN i %% 100 < 98 THEN 'keyed' WHEN i %% 100 < 99 THEN 'enrolled' ELSE 'config_issued' END AS state
  FROM (SELECT i, lpad(to_hex(i), 8, '0') AS h FROM generate_series(1, %(n)s) AS i) AS g
) AS s
"""
SEED_AUDIT = """
INSERT INTO audit_log (id, at, kind, actor, registration_id, detail, prev_hash, hash)
SELECT row_number() OVER (ORDER BY u.id, k), u.scanned_at + k * interval '1 s',
  CASE k WHEN 0 THEN 'unit.scanned' ELSE 'unit.keyed' END, 'bench', u.registration_id,
  '{"station":"' || u.station || '"}', md5(u.registration_id || k) || md5(k || u.registration_id),
  md5(u.registration_id || k || 'h') || md5('h' || k || u.registration_id)
FROM units u CROSS JOIN generate_series(0, 1) AS k;
UPDATE audit_head SET last_id = (SELECT max(id) FROM audit_log),
  last_hash = (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) WHERE id = 1;
"""


def seed(url: str, units: int) -> None:
    """Migrate and fill the database with `units` generated units and their audit records."""
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_UNITS, {"n": units})  # type: ignore[arg-type]
        conn.execute(SEED_AUDIT)  # type: ignore[arg-type]
        # What autovacuum does on a live line: visibility map set, so index-only scans apply.
        conn.execute("VACUUM ANALYZE units")
        conn.execute("VACUUM ANALYZE audit_log")


def queries(mac: str) -> dict[str, str]:
    """Every API query and dashboard view measured, by name."""
    return {
        "units (newest first)": "/api/v1/units",
        "units state=failed": "/api/v1/units?state=failed",
        "units station+verdict=fail": "/api/v1/units?station=S7&verdict=fail",
        "units line+time range": "/api/v1/units?line=line2&since=2026-01-01T00:00:00Z&until=2030-01-01",
        "units q=MAC": f"/api/v1/units?q={mac}",
        "units sort=updated_at limit=500": "/api/v1/units?sort=updated_at&limit=500",
        "units stuck": "/api/v1/units?stuck=true",
        "units reason": "/api/v1/units?state=failed&reason=serial%20timeout",
        "unit timeline": f"/api/v1/units/{mac}",
        "stations yield": "/api/v1/stations",
        "failures Pareto": "/api/v1/failures",
        "summary": "/api/v1/summary",
        "dashboard live fragment": "/fragments/live",
        "dashboard live page": "/",
        "dashboard units search": f"/units?q={mac}",
        "dashboard units state=failed": "/units?state=failed",
    }


def time_get(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    """p50/p95/max latency in ms of `repeat` GETs after one warm-up."""
    client.get(path).raise_for_status()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[max(0, round(0.95 * len(samples)) - 1)]
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(samples[-1], 1),
    }


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def stream(client: httpx.Client, path: str) -> dict[str, float]:
    """Download `path` as a stream; bytes, lines and seconds."""
    start, size, lines = time.perf_counter(), 0, 0
    with client.stream("GET", path) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return {"seconds": round(time.perf_counter() - start, 2), "mib": round(size / 2**20, 1), "lines": lines}


def run(url: str, units: int, repeat: int) -> dict[str, Any]:
    """Seed, serve, measure."""
    t0 = time.perf_counter()
    seed(url, units)
    result: dict[str, Any] = {"units": units, "seed_seconds": round(time.perf_counter() - t0, 1)}
    work = Path(tempfile.mkdtemp(prefix="edgeline-bench-web-"))
    env = {**os.environ, "EDGELINE_DATABASE_URL": url, "EDGELINE_STATE_DIR": str(work)}
    cli = [sys.executable, "-m", "pipeline.cli.main"]
    keygen = [*cli, "audit", "keygen", "--private-key", str(work / "site.key")]
    subprocess.run(keygen, env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "web", "token", "create", "--role", "auditor"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[-1]
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [*cli, "web", "--listen", f"127.0.0.1:{port}", "--signing-key", str(work / "site.key")],
        env=env,
        cwd=REPO,
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=300
        )
        _wait(client)
        mac = "02:bb:00:00:c3:50" if units >= 50000 else "02:bb:00:00:00:01"
        result["latency"] = {name: time_get(client, path, repeat) for name, path in queries(mac).items()}
        result["rss_before_exports_mib"] = peak_rss_mib(server.pid)
        result["export_units_csv"] = stream(client, "/api/v1/export/units.csv")
        result["export_units_json"] = stream(client, "/api/v1/export/units.json")
        result["export_records_signed_jsonl"] = stream(client, "/api/v1/export/records.jsonl")
        result["peak_rss_after_exports_mib"] = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return result


def _wait(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/api/v1/openapi.json")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> None:
    """Parse arguments, run on a fresh database (dropped afterwards unless --keep), print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    name = f"edgeline_bench_web_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        print(json.dumps(run(f"{PG_SERVER}/{name}", args.units, args.repeat), indent=2))
    finally:
        if not args.keep:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
