"""MQTT sessions of worker processes on a real Mosquitto: expiry, takeover, ids side by side.

Issue #8 §2: a SIGKILLed worker replaced by one with another client id left its session in the shared
group for 7 days, and the broker kept queueing half of the messages to it; two `edgeline up` on one
host took each other's session over in a loop.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_bus_paho import Collector

from pipeline.bus.paho import PahoBus, PahoOptions
from pipeline.db import migrate

if TYPE_CHECKING:
    from tests.conftest import Mosquitto

pytestmark = pytest.mark.mosquitto
V5 = PahoOptions(protocol="5", stop_on_takeover=True)

_WORKER = """
import sys, time
from pipeline.bus.paho import PahoBus, PahoOptions
url, client_id, group, topic, expiry = sys.argv[1:6]
bus = PahoBus.from_url(url, client_id, PahoOptions(protocol="5", session_expiry_seconds=int(expiry)))
bus.subscribe(topic, lambda message: None, shared_group=group)  # never acks: a worker about to die
bus.connect(10)
print("up", flush=True)
time.sleep(120)
"""


@pytest.fixture
def clients() -> Iterator[list[PahoBus]]:
    made: list[PahoBus] = []
    yield made
    for bus in made:
        bus.close()


def connect(clients: list[PahoBus], url: str, client_id: str, options: PahoOptions = V5) -> PahoBus:
    bus = PahoBus.from_url(url, client_id, options)
    clients.append(bus)
    return bus


def kill_a_worker_in_the_group(url: str, client_id: str, group: str, topic: str, expiry: int) -> None:
    """Start a worker process that joins the shared group, then SIGKILL it (no DISCONNECT is sent)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, client_id, group, topic, str(expiry)],
        stdout=subprocess.PIPE,
        cwd=os.getcwd(),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"up"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


@pytest.mark.parametrize(("expiry", "left_for_the_dead"), [(0, False), (2, False), (3600, True)])
def test_a_killed_workers_session_stops_taking_messages_once_it_expired(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str, expiry: int, left_for_the_dead: bool
) -> None:
    topic, group = f"{topic_root}/units/events/x", f"{topic_root}-workers"
    kill_a_worker_in_the_group(mosquitto.url, f"{topic_root}-dead", group, topic, expiry)
    survivor = Collector()
    bus = connect(clients, mosquitto.url, f"{topic_root}-fresh")
    bus.subscribe(topic, survivor, shared_group=group)
    bus.connect(10)
    publisher = connect(clients, mosquitto.url, f"{topic_root}-pub", PahoOptions(clean_session=True))
    publisher.connect(10)
    for i in range(20):
        publisher.publish(topic, b"before-%d" % i, timeout=10)
    time.sleep(expiry + 2 if expiry < 60 else 2)
    for i in range(10):
        publisher.publish(topic, b"after-%d" % i, timeout=10)
    time.sleep(1.0)
    got = set(survivor.payloads)
    # Whatever went to the dead session is gone with it; the reconciler re-drives those units.
    assert {b"after-%d" % i for i in range(10)} <= got or left_for_the_dead
    back = Collector()
    revived = connect(clients, mosquitto.url, f"{topic_root}-dead")
    revived.subscribe(topic, back, shared_group=group)
    revived.connect(10)
    time.sleep(1.5)
    queued_for_the_dead = len(back.payloads)
    if left_for_the_dead:  # the old behaviour: the broker kept them for the dead session
        assert queued_for_the_dead >= 5 and len(got) < 30
    else:
        assert queued_for_the_dead == 0, back.payloads
        assert len(got) >= 20  # all 10 "after" and at least the survivor's half of "before"


def test_a_second_client_with_the_same_id_makes_the_first_stop_with_one_line(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    first = connect(clients, mosquitto.url, f"{topic_root}-same")
    reasons: list[str] = []
    first.on_fatal(reasons.append)
    first.connect(10)
    second = connect(clients, mosquitto.url, f"{topic_root}-same")
    second.connect(10)
    deadline = time.monotonic() + 10
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reasons and reasons[0] == first.fatal_error
    assert "session taken over" in reasons[0] and "EDGELINE_CLIENT_ID" in reasons[0]
    time.sleep(1.0)
    takeovers = mosquitto.log.read_text().count("already connected, closing old connection")
    time.sleep(4)  # paho would retry within 1-2 s; the first must stay down, the second up
    assert not first.connected and second.connected
    assert mosquitto.log.read_text().count("already connected, closing old connection") == takeovers
    assert takeovers <= 5  # a few rounds at most, not 24 in 25 s


# -- `edgeline up` processes -----------------------------------------------------------------------


def _env(mosquitto: Mosquitto, tmp_path: Path, topic_root: str) -> dict[str, str]:
    key = base64.b64encode(bytes(range(32))).decode()
    db_url = f"sqlite:///{tmp_path / 'edgeline.db'}"
    migrate.upgrade(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELINE_")}
    return {
        **env,
        "EDGELINE_DATABASE_URL": db_url,
        "EDGELINE_MQTT_URL": mosquitto.url,
        "EDGELINE_TOPIC_ROOT": topic_root,
        "EDGELINE_MASTER_KEY": key,
        "EDGELINE_ENROLLMENT_MODE": "individual",  # starts without DPS: no group to ensure
        "EDGELINE_DPS_CONNECTION_STRING": f"HostName=http://127.0.0.1:9;SharedAccessKeyName=p;SharedAccessKey={key}",
        "EDGELINE_DPS_ID_SCOPE": "0ne00000001",
        "EDGELINE_DPS_GLOBAL_ENDPOINT": "http://127.0.0.1:9",
    }


def _up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "up"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=os.getcwd(),
    )


def _wait_for_line(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {log}: {log.read_text()[-2000:]}"
        time.sleep(0.2)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.timeout(180)
def test_two_up_processes_with_default_ids_run_side_by_side(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = _env(mosquitto, tmp_path, topic_root)
    logs = [tmp_path / "up-1.log", tmp_path / "up-2.log"]
    processes.extend(_up(env, log) for log in logs)
    for log in logs:
        _wait_for_line(log, "workers running")
    time.sleep(5)  # a takeover loop would show within a couple of reconnect delays
    assert [p.poll() for p in processes] == [None, None], [log.read_text()[-2000:] for log in logs]
    for process in processes:
        process.terminate()
        assert process.wait(30) == 0
    for log in logs:
        assert "lost connection" not in log.read_text()
    assert "taken over" not in mosquitto.log.read_text().lower()


@pytest.mark.timeout(180)
def test_two_up_processes_with_the_same_id_one_exits_with_one_line(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = {**_env(mosquitto, tmp_path, topic_root), "EDGELINE_CLIENT_ID": f"{topic_root}-twin"}
    first_log, second_log = tmp_path / "up-1.log", tmp_path / "up-2.log"
    processes.append(_up(env, first_log))
    _wait_for_line(first_log, "workers running")
    processes.append(_up(env, second_log))
    assert processes[0].wait(60) == 1
    last_line = first_log.read_text().strip().splitlines()[-1]
    assert last_line.startswith("edgeline up: another MQTT client connected to"), last_line
    assert "session taken over" in last_line and "EDGELINE_CLIENT_ID" in last_line
    assert "Traceback" not in first_log.read_text()
    _wait_for_line(second_log, "workers running")
    assert processes[1].poll() is None, second_log.read_text()[-2000:]


def test_messages_left_unacknowledged_are_warned_about(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = Collector(ack=False)  # a handler that never finishes its work
    bus = connect(
        clients, mosquitto.url, f"{topic_root}-slow", PahoOptions(protocol="5", unacked_warn_seconds=1)
    )
    bus.subscribe(f"{topic_root}/jobs", stuck)
    bus.connect(10)
    publisher = connect(clients, mosquitto.url, f"{topic_root}-pub", PahoOptions(clean_session=True))
    publisher.connect(10)
    for i in range(3):
        publisher.publish(f"{topic_root}/jobs", b"%d" % i, timeout=10)
    stuck.wait_for(3)
    deadline = time.monotonic() + 20
    while "unacknowledged" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.2)
    warnings = [r.getMessage() for r in caplog.records if "unacknowledged" in r.getMessage()]
    assert warnings, "no warning about 3 messages left un-acked"
    assert f"{topic_root}-slow holds 3 received message(s) unacknowledged" in warnings[0]


def test_a_message_of_a_session_the_broker_forgot_is_not_acknowledged_in_the_new_one(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    """A late ack of a message from a dropped session must not acknowledge the new session's message.

    Both sessions number their deliveries from packet id 1: a PUBACK for the old message would tell the
    broker the new one was handled, and a worker dying before handling it would lose it for good.
    """
    topic, worker_id = f"{topic_root}/units/events/x", f"{topic_root}-worker"
    held = Collector(ack=False)
    worker = connect(clients, mosquitto.url, worker_id, PahoOptions(protocol="5", session_expiry_seconds=60))
    worker.subscribe(topic, held)
    worker.connect(10)
    publisher = connect(clients, mosquitto.url, f"{topic_root}-pub", PahoOptions(clean_session=True))
    publisher.connect(10)
    publisher.publish(topic, b"old", timeout=10)
    held.wait_for(1)
    mosquitto.stop()
    (mosquitto.workdir / "mosquitto.db").unlink(missing_ok=True)  # the broker forgets every session
    mosquitto.start()
    assert worker.wait_connected(20) and publisher.wait_connected(20)
    time.sleep(0.5)  # the worker's re-subscription reaches the broker
    publisher.publish(topic, b"new", timeout=10)
    held.wait_for(2, timeout=10)
    held.messages[0].ack()  # the handler of the old message finishes late
    time.sleep(0.5)
    worker.close()  # a DISCONNECT: the new session stays for 60 s with "new" un-acked
    again = Collector()
    revived = connect(clients, mosquitto.url, worker_id, PahoOptions(protocol="5", session_expiry_seconds=60))
    revived.subscribe(topic, again)
    revived.connect(10)
    assert again.wait_for(1, timeout=10)[0].payload == b"new"  # still the broker's to redeliver
