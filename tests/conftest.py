"""Shared pytest fixtures. Each engineer keeps fixtures in a clearly marked section."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.bus.embedded import EmbeddedBroker

# ======================================================================================================
# MQTT brokers (bus) — real brokers, no mocks: a private Mosquitto process and the in-process amqtt
# ======================================================================================================


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 5.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def wait_until(condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Mosquitto:
    """A mosquitto process on a free port with its own config and persistence directory."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "mosquitto.log"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 0\n"  # the default 1000 silently drops QoS 1 messages (azure-notes §9)
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log}\n" + ("user root\n" if os.geteuid() == 0 else "")
            # As root, mosquitto drops to user `mosquitto`, which cannot write its persistence file here:
            # sessions would then not survive a restart (tests of broker outages rely on them).
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._process = subprocess.Popen([binary, "-c", str(self.config)], stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port)
        except OSError:
            self.stop()
            # from None: the log says why, the refused probe does not
            raise RuntimeError(
                f"mosquitto did not start: {self.log.read_text() if self.log.exists() else ''}"
            ) from None

    def stop(self) -> None:
        """Terminate (SIGTERM: mosquitto writes its persistence file) and wait."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)
            self._process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto broker for one test (skipped when the binary is missing)."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto binary not installed: apt-get install mosquitto (or run bash .ci/run)")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """An amqtt broker running in this process on a free port."""
    broker = EmbeddedBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def free_tcp_port() -> int:
    """A local port nothing listens on (for "broker is down" tests)."""
    return free_port()


@pytest.fixture
def topic_root() -> str:
    """A topic root no other test uses, so tests sharing a broker never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:12]}"


# ======================================================================================================
# (end of MQTT broker fixtures)
# ======================================================================================================


# ======================================================================================================
# Databases (pipeline.db) — real SQLite files and a private PostgreSQL database, schema BY MIGRATIONS
# ======================================================================================================
# `db_url` runs each test on both backends: a fresh SQLite file (a copy of one migrated once per
# session), and this session's own PostgreSQL database `edgeline_test_<random>` (created on the
# `postgres` maintenance DB, migrated once, emptied before each test, dropped at the end). Nothing else
# on the server is touched.

from pipeline.db import migrate  # noqa: E402  (kept in this section, not at the top of the shared file)
from pipeline.db.session import Database  # noqa: E402

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_TABLES = (
    "units",
    "device_keys",
    "enrollment_groups",
    "stations",
    "outbox",
    "processed_messages",
    "api_tokens",  # web
    "audit_log",
)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def create_pg_database() -> str:
    """Create an empty PostgreSQL database of our own and return its URL (skip if no server)."""
    import psycopg

    name = f"edgeline_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {PG_SERVER}: {exc} (start it, or run bash .ci/run)")
    return f"{PG_SERVER}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by create_pg_database, disconnecting anything still attached."""
    name = url.rsplit("/", 1)[1]
    assert name.startswith("edgeline_test_")
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_migrated_url() -> Iterator[str]:
    """This session's PostgreSQL database, migrated to head."""
    url = create_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(url)


def empty_pg(url: str) -> None:
    """Empty every table of the session's PostgreSQL database (and reset the audit head)."""
    _empty_pg(url)


def _empty_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(DB_TABLES)} RESTART IDENTITY")  # type: ignore[arg-type]
        conn.execute("UPDATE audit_head SET last_id = 0, last_hash = %s WHERE id = 1", ("0" * 64,))


@pytest.fixture(scope="session")
def sqlite_migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; `db_url` gives each test its own copy.

    The SQLite counterpart of `CREATE DATABASE ... TEMPLATE`: the copy is byte for byte what the
    migrations wrote (WAL mode in its header included), without running Alembic for every test.
    """
    path = tmp_path_factory.mktemp("sqlite-template") / "edgeline.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def copy_sqlite_database(source: Path, target: Path) -> None:
    """Copy a closed SQLite database file, with its write-ahead log if one was left behind."""
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty, migrated database: SQLite file or PostgreSQL (parametrised)."""
    if request.param == "sqlite":
        path = tmp_path / "edgeline.db"
        copy_sqlite_database(request.getfixturevalue("sqlite_migrated_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated_url")
    _empty_pg(url)
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A pipeline.db.session.Database on `db_url`, disposed after the test."""
    db = Database(db_url)
    yield db
    db.dispose()


# ======================================================================================================
# (end of database fixtures)
# ======================================================================================================


# ======================================================================================================
# Secured Mosquitto (deploy) — the repo's deploy/mosquitto/mosquitto.conf and ACL, with real passwords
# ======================================================================================================
# The shipped config, with only its container paths, listener and log destination replaced, so tests
# exercise the same authentication, ACL and queueing settings as the compose stack.


REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_MOSQUITTO = REPO_ROOT / "deploy" / "mosquitto"


TLS_LISTENER_OPTIONS = ("certfile", "keyfile", "cafile", "tls_version", "require_certificate")


class SecuredMosquitto(Mosquitto):
    """Mosquitto running deploy/mosquitto/mosquitto.conf + acl, with a generated password file."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        self.passwd = workdir / "passwd"
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run([passwd_tool, "-b", *create, str(self.passwd), user, password], check=True)
        self.config.write_text(self.render(DEPLOY_MOSQUITTO / "mosquitto.conf"))

    def render(self, source: Path) -> str:
        """The shipped config with test paths; fails if a setting this relies on is missing."""
        overrides = {
            "listener": f"listener {self.port} 127.0.0.1",
            "password_file": f"password_file {self.passwd}",
            "acl_file": f"acl_file {DEPLOY_MOSQUITTO / 'acl'}",
            "persistence_location": f"persistence_location {self.workdir}/",
            "log_dest": f"log_dest file {self.log}",
        }
        seen: set[str] = set()
        out: list[str] = []
        extra_listener = False  # the TLS listener (8883) and its certificate options: one listener in tests
        for line in source.read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
            if key == "listener" and key in seen:
                extra_listener = True
                continue
            if extra_listener and key in TLS_LISTENER_OPTIONS:
                continue
            if key:
                extra_listener = False
            if key in overrides:
                if key not in seen:  # one listener/log destination in tests
                    out.append(overrides[key])
                seen.add(key)
            else:
                out.append(line)
        missing = set(overrides) - seen
        assert not missing, f"{source} lacks settings {sorted(missing)}"
        if os.geteuid() == 0:  # as root, mosquitto would switch to user `mosquitto`, who cannot read tmp_path
            out.append("user root")
        return "\n".join(out) + "\n"


@pytest.fixture
def secured_mosquitto(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], SecuredMosquitto]]:
    """Factory: start the shipped broker config with the given {username: password} (skips w/o mosquitto)."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto binary not installed: apt-get install mosquitto (or run bash .ci/run)")
    started: list[SecuredMosquitto] = []

    def start(users: dict[str, str]) -> SecuredMosquitto:
        broker = SecuredMosquitto(tmp_path / f"broker{len(started)}", users)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.stop()


# ======================================================================================================
# (end of secured Mosquitto fixtures)
# ======================================================================================================


# ======================================================================================================
# Restartable Mosquitto (stations: offline spool, broker outage) — sessions survive stop()/start()
# ======================================================================================================
# The plain `Mosquitto` keeps its port and persistence folder across stop()/start(), but when the tests
# run as root, mosquitto drops to user `mosquitto`, who cannot write the persistence file into tmp_path:
# persistent sessions (and the QoS 1 messages queued for them) would then vanish on a restart.


class RestartableMosquitto(Mosquitto):
    """A private Mosquitto whose persistent sessions survive `stop()` + `start()` on the same port."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)  # the base class already keeps sessions across restarts

    def restart_after(self, seconds: float) -> None:
        """Stop now, start again after `seconds` (blocking)."""
        self.stop()
        time.sleep(seconds)
        self.start()


@pytest.fixture
def restartable_mosquitto(tmp_path: Path) -> Iterator[RestartableMosquitto]:
    """A private Mosquitto for outage tests: stop() and start() it; sessions and queues persist."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto binary not installed: apt-get install mosquitto (or run bash .ci/run)")
    broker = RestartableMosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


# ======================================================================================================
# (end of restartable Mosquitto fixtures)
# ======================================================================================================


# ======================================================================================================
# PKCS#11 — a real SoftHSM2 token (Debian's softhsm2), fresh per test session
# ======================================================================================================

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A new SoftHSM2 token for this session: {'module', 'token_label', 'pin'}; SOFTHSM2_CONF is set."""
    if not Path(SOFTHSM_MODULE).exists():
        pytest.fail(f"{SOFTHSM_MODULE} is missing: apt-get install softhsm2 (.ci/run does)")
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # subprocesses (the CLI under test) inherit it
    label, pin = f"edgeline-{uuid.uuid4().hex[:8]}", "4321"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "87654321"],
        check=True,
        capture_output=True,
    )
    yield {"module": SOFTHSM_MODULE, "token_label": label, "pin": pin}
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
    shutil.rmtree(folder, ignore_errors=True)


# ======================================================================================================
# Fault suite report (faults): the scenario table of tests/faults, printed at the end and written as JSON
# ======================================================================================================

FAULT_COLUMNS = (
    "scenario",
    "units",
    "lost",
    "duplicated",
    "stuck",
    "recovery_seconds",
    "redriven",
    "audit_ok",
)


# Under pytest-xdist the scenarios run in worker processes while the controller prints the summary, so
# each scenario's outcomes travel in its test report (`user_properties`), and only the process that
# receives every report (the controller, or the single process without xdist) keeps and writes them.
FAULT_OUTCOME = "fault_outcome"
FAULT_OUTCOMES: list[dict[str, Any]] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Attach the outcomes a fault scenario measured (tests/faults/harness.PENDING) to its call report."""
    pending = getattr(sys.modules.get("harness"), "PENDING", None)
    if call.when == "call" and pending:
        item.user_properties.extend((FAULT_OUTCOME, outcome.to_dict()) for outcome in pending)
        pending.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the scenario outcomes; write the JSON at once (a run that is killed still leaves them)."""
    if report.when != "call" or "PYTEST_XDIST_WORKER" in os.environ:  # a worker: its controller writes
        return
    outcomes = [value for key, value in report.user_properties if key == FAULT_OUTCOME]
    if outcomes:
        FAULT_OUTCOMES.extend(outcomes)
        fault_report_path().write_text(json.dumps(FAULT_OUTCOMES, indent=2))


def fault_report_path() -> Path:
    """Where the scenario table is written: $EDGELINE_FAULTS_REPORT, default in the temp folder."""
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "edgeline-faults-report.json"
    return Path(os.environ.get("EDGELINE_FAULTS_REPORT") or default)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print tests/faults' scenario table (the JSON file is already written, see above)."""
    results = FAULT_OUTCOMES
    if not results:
        return
    widths = [max(len(c), *(len(str(r[c])) for r in results)) for c in FAULT_COLUMNS]
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(FAULT_COLUMNS, widths, strict=True)))
    for result in results:
        cells = (str(result[c]).ljust(w) for c, w in zip(FAULT_COLUMNS, widths, strict=True))
        terminalreporter.write_line("  ".join(cells))
        for violation in result["violations"][:5]:
            terminalreporter.write_line(f"    {violation}")
    terminalreporter.write_line(f"report: {fault_report_path()}")


# ======================================================================================================
# (end of fault suite report)
# ======================================================================================================
