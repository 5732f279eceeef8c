"""Measuring instruments for benchmarks.pipeline: process CPU and RSS, PostgreSQL counters, raw MQTT rate.

CPU and RSS come from /proc (Linux only; benchmarks run on the line's Linux hosts), PostgreSQL figures
from pg_stat_database / pg_stat_activity of the benchmark's own database, so other databases on the
same server do not count. Not responsible for: the load itself (benchmarks.loadgen).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` in MiB (0 if it is gone)."""
    return status_mib(pid, "VmRSS")


def status_mib(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS, VmHWM, ...) in MiB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def listener_pid(port: int) -> int | None:
    """The process listening on TCP `port` on this host (e.g. the system Mosquitto), if visible."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except psutil.Error:
        return None
    return None


@dataclass(frozen=True)
class PgCounters:
    """Cumulative counters of one database and the CPU of its backends at one instant."""

    tuples_read: int
    commits: int
    backend_cpu: dict[int, float]


def pg_counters(admin_url: str, db_name: str) -> PgCounters:
    """Read tup_returned+tup_fetched, xact_commit and each backend's CPU for `db_name`."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT tup_returned + tup_fetched, xact_commit FROM pg_stat_database WHERE datname = %s",
            (db_name,),
        ).fetchone()
        pids = [p for (p,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db_name,))]
    assert row is not None
    return PgCounters(int(row[0]), int(row[1]), {pid: cpu_seconds(pid) for pid in pids})


def table_reads(db_url: str) -> dict[str, dict[str, int]]:
    """Per table: sequential scans, tuples they read, index scans and tuples fetched through indexes."""
    query = (
        "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_user_tables"
    )
    index_query = "SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes"
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(query).fetchall()
        index_rows = conn.execute(index_query).fetchall()
    keys = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch")
    reads = {str(name): dict(zip(keys, map(int, values), strict=True)) for name, *values in rows}
    for name, scans, entries in index_rows:
        reads[str(name)] = {"idx_scan": int(scans), "idx_tup_read": int(entries)}
    return reads


def table_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], units: int
) -> dict[str, dict[str, float]]:
    """Per-unit table reads between two `table_reads`, tables with no reads left out."""
    result = {}
    for table, counts in after.items():
        old = before.get(table, {})
        per_unit = {k: round((v - old.get(k, 0)) / max(units, 1), 2) for k, v in counts.items()}
        if any(per_unit.values()):
            result[table] = per_unit
    return result


def pg_delta(before: PgCounters, after: PgCounters) -> tuple[int, int, float]:
    """(tuples read, commits, backend CPU seconds) between two readings (new backends count fully)."""
    cpu = sum(seconds - before.backend_cpu.get(pid, 0.0) for pid, seconds in after.backend_cpu.items())
    return after.tuples_read - before.tuples_read, after.commits - before.commits, cpu


@dataclass
class RssSampler:
    """Samples the RSS of named processes every `every` seconds on a daemon thread."""

    pids: dict[str, int]
    every: float = 2.0
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="rss-sampler", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every):
            sample = {"t_s": round(time.monotonic() - started, 1)}
            sample.update({name: rss_mib(pid) for name, pid in self.pids.items()})
            self.samples.append(sample)

    def peaks(self) -> dict[str, float]:
        """Highest RSS seen per process."""
        return {name: max((s.get(name, 0.0) for s in self.samples), default=0.0) for name in self.pids}


def raw_qos1_rate(url: str, root: str, messages: int = 20_000) -> float:
    """Messages/s of QoS 1 publish (pipelined PUBACKs) -> broker -> QoS 1 subscriber with acks."""
    tag = uuid.uuid4().hex[:8]
    received = threading.Semaphore(0)
    count = [0]

    def on_message(message: InboundMessage) -> None:
        message.ack()
        count[0] += 1
        if count[0] == messages:
            received.release()

    sub = PahoBus.from_url(url, f"bench-raw-sub-{tag}", clean_session=True)
    pub = PahoBus.from_url(url, f"bench-raw-pub-{tag}", clean_session=True)
    try:
        sub.connect()
        pub.connect()
        topic = f"{root}/raw/{tag}"
        sub.subscribe(topic, on_message)
        payload = b"x" * 400  # about the size of a pipeline event
        started = time.monotonic()
        for first in range(0, messages, 500):
            batch = [(topic, payload)] * min(500, messages - first)
            sent = 0
            while sent < len(batch):
                sent += pub.publish_many(batch[sent:])
        if not received.acquire(timeout=120):
            return count[0] / (time.monotonic() - started)
        return messages / (time.monotonic() - started)
    finally:
        pub.close()
        sub.close()
