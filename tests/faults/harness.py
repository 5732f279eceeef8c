"""The fault suite's harness: a whole line as separate processes, faults to inject, and the verdict.

Responsible for: a private Mosquitto (configurable persistence and queue limit; SIGTERM or SIGKILL),
a fresh PostgreSQL database (optionally behind a cuttable TCP proxy), `edgeline emulator`, N copies of
`edgeline up` and `edgeline station run --simulate`, each its own process with its own log; waiting for
the line to settle; and measuring per scenario: units lost, duplicated, stuck, recovery time,
units the reconciler re-drove, and `edgeline audit check`'s verdict (`Outcome`, queued in PENDING).
Not responsible for: asserting (the scenarios do) or the report table and its JSON file (tests/conftest.py
takes PENDING into each test's report, so the table also works when pytest-xdist runs scenarios in
worker processes).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bus_tap import BusTap
from conftest import Mosquitto, create_pg_database, drop_pg_database, free_port, wait_for_port
from tcp_proxy import TcpProxy

from pipeline.crypto.station_key import StationKeyPair
from pipeline.db import migrate
from pipeline.db.session import Database
from pipeline.service.unit_of_work import StationRecord

REPO = Path(__file__).resolve().parents[2]
PENDING: list[Outcome] = []  # measured by this process, not yet attached to a test report (conftest)


@dataclass
class Outcome:
    """What one scenario did to the line, for the report table."""

    scenario: str
    units: int
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    recovery_seconds: float = 0.0
    redriven: int = 0
    audit_ok: bool = False
    violations: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBroker(Mosquitto):
    """The conftest Mosquitto with the knobs the scenarios turn, and a SIGKILL."""

    def __init__(self, workdir: Path, *, persistence: bool = True, max_queued: int = 0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        config = self.config.read_text().replace("max_queued_messages 0", f"max_queued_messages {max_queued}")
        if not persistence:
            config = config.replace("persistence true", "persistence false")
        self.config.write_text(config)

    def kill(self) -> None:
        """SIGKILL: nothing is written to the persistence file."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None


class FaultLine:
    """One line as processes; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        tmp: Path,
        *,
        units: int = 30,
        mode: str = "individual",
        broker: FaultBroker | None = None,
        db_proxy: bool = False,
        station_args: tuple[str, ...] = (),
    ) -> None:
        self.tmp, self.units, self.mode = tmp, units, mode
        self.station_args = station_args
        self.broker = broker or FaultBroker(tmp / "broker")
        self.pg_url = create_pg_database()
        self.proxy = TcpProxy("127.0.0.1", 5432).start() if db_proxy else None
        self.dps_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.serial_prefix = f"F{secrets.token_hex(2).upper()}"
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        service_key = base64.b64encode(secrets.token_bytes(32)).decode()
        db_url = self.pg_url
        if self.proxy is not None:
            db_url = db_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}")
        return {
            "EDGELINE_DATABASE_URL": db_url,
            "EDGELINE_MQTT_URL": self.broker.url,
            "EDGELINE_TOPIC_ROOT": f"faults-{secrets.token_hex(4)}",
            "EDGELINE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "EDGELINE_DPS_CONNECTION_STRING": f"HostName=http://127.0.0.1:{self.dps_port};"
            f"SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={service_key}",
            "EDGELINE_EMULATOR_SERVICE_KEY": service_key,
            "EDGELINE_DPS_ID_SCOPE": "0ne00" + secrets.token_hex(3).upper(),
            "EDGELINE_DPS_GLOBAL_ENDPOINT": f"http://127.0.0.1:{self.dps_port}",
            "EDGELINE_ENROLLMENT_MODE": self.mode,
            "EDGELINE_LOG_LEVEL": "WARNING",
            "EDGELINE_CONFIRM_INTERVAL_SECONDS": "0.5",
            "EDGELINE_CONFIRM_BACKOFF_INITIAL_SECONDS": "0.5",
            "EDGELINE_CONFIRM_BACKOFF_MAX_SECONDS": "3",
            "EDGELINE_RECONCILE_INTERVAL_SECONDS": "1",
            "EDGELINE_RECONCILE_STUCK_SECONDS": "8",
        }

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> FaultLine:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.broker.stop()
        if self.proxy is not None:
            self.proxy.stop()
        drop_pg_database(self.pg_url)

    def start(self, *, workers: int = 2, tap: bool = False) -> BusTap | None:
        """Start broker, emulator, migrated DB, station S1 (registered), `workers` x `up`, the station."""
        self.broker.start()
        scope = self.env["EDGELINE_DPS_ID_SCOPE"]
        self.spawn("emulator", "emulator", "--port", str(self.dps_port), "--id-scope", scope)
        wait_for_port(self.dps_port, timeout=30)
        migrate.upgrade(self.pg_url)  # in-process: the CLI round trips cost seconds per scenario
        self.register_station("S1")
        bus_tap = BusTap(self.broker.port, self.env["EDGELINE_TOPIC_ROOT"]) if tap else None
        for index in range(workers):
            self.start_worker(index)
        self.start_station()
        return bus_tap

    def register_station(self, name: str) -> Path:
        """What `edgeline station init` + `station add` do, in-process; return the key file."""
        keypair = StationKeyPair.generate()
        key_file = keypair.save(self.tmp / f"{name}.key")
        db = Database(self.pg_url)
        try:
            with db.uow() as uow:
                uow.stations.put(StationRecord(name, "line1", keypair.public_bytes(), datetime.now(UTC)))
                uow.commit()
        finally:
            db.dispose()
        return key_file

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `edgeline ARGS` as process `name` (log: tmp/NAME.log, appended across restarts)."""
        log = (self.tmp / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.processes[name] = process
        return process

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a one-shot `edgeline` command against the line's direct database URL."""
        env = {**os.environ, **self.env, "EDGELINE_DATABASE_URL": self.pg_url}
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert not check or done.returncode == 0, f"edgeline {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def start_worker(self, index: int, client_id: str | None = None) -> None:
        self.spawn(f"worker-{index}", "up", "--client-id", client_id or f"faults-worker-{index}")

    def start_station(self, name: str = "station") -> None:
        args = ["station", "run", "--name", "S1", "--key-file", str(self.tmp / "S1.key"), *self.station_args]
        args += ["--watch-dir", str(self.tmp / "ports"), "--devices-dir", str(self.tmp / "devices")]
        args += ["--simulate", str(self.units), "--serial-prefix", self.serial_prefix]
        self.spawn(name, *args)

    def signal(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.send_signal(signum)
        process.wait(15)

    def dps_faults(self, **settings: Any) -> None:
        """Switch the emulator's runtime fault injection (no arguments: none)."""
        url = f"http://127.0.0.1:{self.dps_port}/_emulator/faults"
        httpx.post(url, json=settings, timeout=10).raise_for_status()

    # -- observing -------------------------------------------------------------------------------------

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url) as conn:
            return conn.execute(query).fetchall()  # type: ignore[arg-type]

    def states(self) -> dict[str, int]:
        return {state: count for state, count in self.sql("SELECT state, count(*) FROM units GROUP BY state")}

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                tails = "".join(f"\n--- {n}.log:\n{self.log_tail(n, 800)}" for n in self.processes)
                raise AssertionError(f"timed out waiting for {what}; states {self.states()}{tails}")
            time.sleep(0.3)

    def wait_scanned(self, count: int, timeout: float = 120) -> None:
        self.wait(lambda: sum(self.states().values()) >= count, timeout, f"{count} scanned units")

    def serials(self, indexes: range | set[int] | None = None) -> set[str]:
        """The serial numbers `--simulate` gives the devices at these indexes (all by default)."""
        chosen = range(self.units) if indexes is None else indexes
        return {f"{self.serial_prefix}-{index:05d}" for index in chosen}

    def settle(
        self, scenario: str, fault_over: float, timeout: float = 120, good: set[str] | None = None
    ) -> Outcome:
        """Wait until every good device's unit is assigned (or time is up), then measure and audit-check.

        `good`: the serials that must end assigned (default: every device of the station).
        """
        good = self.serials() if good is None else good
        deadline = time.monotonic() + timeout
        while self._assigned(good) < len(good) and time.monotonic() < deadline:
            time.sleep(0.3)
        outcome = Outcome(scenario, self.units, recovery_seconds=round(time.monotonic() - fault_over, 1))
        self._measure(outcome, good)
        PENDING.append(outcome)
        return outcome

    def _assigned(self, good: set[str]) -> int:
        rows = self.sql("SELECT serial FROM units WHERE state = 'assigned'")
        return len(good & {serial for (serial,) in rows})

    def _measure(self, outcome: Outcome, good: set[str]) -> None:
        outcome.states = self.states()
        total, serials = self.sql("SELECT count(*), count(DISTINCT serial) FROM units")[0]
        known = {serial for (serial,) in self.sql("SELECT serial FROM units")}
        outcome.lost = len(good - known)
        outcome.stuck = len(good) - self._assigned(good) - outcome.lost
        emulator = httpx.get(f"http://127.0.0.1:{self.dps_port}/_emulator/state", timeout=10).json()
        extra_enrollments = len(emulator["dps"]["enrollments"]) - total if self.mode == "individual" else 0
        extra_devices = sum(len(devices) for devices in emulator["hubs"].values()) - total
        outcome.duplicated = (total - serials) + max(0, extra_enrollments) + max(0, extra_devices)
        [(redriven,)] = self.sql(
            "SELECT count(DISTINCT registration_id) FROM audit_log WHERE actor = 'reconciler'"
        )
        outcome.redriven = int(redriven)
        self.wait_outbox_drained()
        check = self.cli("audit", "check", "--format", "json", check=False)
        report = json.loads(check.stdout) if check.stdout.startswith("{") else {"violations": []}
        outcome.audit_ok = check.returncode == 0
        outcome.violations = [f"{v['unit']}: {v['rule']}: {v['problem']}" for v in report["violations"]]
        if check.returncode not in (0, 1):
            outcome.violations.append(f"audit check failed to run: {check.stderr.strip()[-300:]}")

    def wait_outbox_drained(self, timeout: float = 20) -> None:
        """The relay publishes shortly after a commit; give it a moment before the outbox rule judges."""
        deadline = time.monotonic() + timeout
        while (
            self.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)

    def station_exit(self, name: str = "station", timeout: float = 180) -> int:
        """Wait for a `--simulate` station to finish; its exit code."""
        return self.processes[name].wait(timeout)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def assert_healthy(outcome: Outcome) -> None:
    """The verdict every scenario shares: nothing lost, duplicated or stuck, and `audit check` passes."""
    assert (outcome.lost, outcome.duplicated, outcome.stuck) == (0, 0, 0), outcome
    assert outcome.audit_ok, outcome.violations
