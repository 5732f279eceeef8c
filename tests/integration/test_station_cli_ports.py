"""`edgeline station run` says what is wrong in one line: a missing or busy port (exit 2), a malformed
broker URL (exit 3); an unreachable broker is no error — the station runs and catches up later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RestartableMosquitto

from pipeline.bus.cloudevents import decode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.bus.topics import Topics
from pipeline.cli.main import main
from pipeline.config import Settings
from pipeline.crypto.station_key import StationKeyPair
from pipeline.domain.events import StationStatus
from stations.link import PySerialLink

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX pseudo-terminals")


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_tcp_port: int) -> Path:
    monkeypatch.setenv("EDGELINE_MQTT_URL", f"mqtt://127.0.0.1:{free_tcp_port}")
    return StationKeyPair.generate().save(tmp_path / "S1.key")


@pytest.fixture
def busy_pty() -> Iterator[str]:
    """A real pseudo-terminal that another program (this test) holds open exclusively."""
    controller, terminal = os.openpty()
    path = os.ttyname(terminal)
    holder = PySerialLink(path)
    yield path
    holder.close()
    os.close(terminal)
    os.close(controller)


def _run(key_file: Path, port: str) -> int:
    return main(["station", "run", "--name", "S1", "--key-file", str(key_file), "--port", port])


def test_a_port_that_does_not_exist(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(key_file, "/dev/ttyNOPE") == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["edgeline station: no such port /dev/ttyNOPE: is the device plugged in?"]
    assert out == ""


def test_a_port_in_use(key_file: Path, busy_pty: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(key_file, busy_pty) == 2
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        f"edgeline station: port {busy_pty} is in use by another program: "
        "close it (terminal, other station agent)"
    ]


def test_a_bad_usb_spec_is_a_usage_error(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["station", "run", "--name", "S1", "--key-file", str(key_file), "--usb", "04zz:1"]) == 2
    _, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "vendor id '04zz' is not 1-4 hex digits" in err


def test_a_malformed_broker_url_exits_3(
    key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELINE_MQTT_URL", "http://127.0.0.1:1883")
    args = ["station", "run", "--name", "S1", "--key-file", str(key_file), "--watch-dir", str(tmp_path / "p")]
    assert main(args) == 3
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        "edgeline station: MQTT URL must start with mqtt:// or mqtts://, got 'http' "
        "(setting EDGELINE_MQTT_URL)"
    ]


@pytest.mark.timeout(60)
def test_an_unreachable_broker_at_start_is_waited_for(key_file: Path, tmp_path: Path) -> None:
    """The station says so in one line, keeps running, and announces itself when the broker comes."""
    broker = RestartableMosquitto(tmp_path / "broker")  # not started yet: the port is free
    env = {**os.environ, "EDGELINE_MQTT_URL": broker.url, "EDGELINE_TOPIC_ROOT": f"t{os.getpid()}"}
    command = [sys.executable, "-m", "pipeline.cli", "station", "run", "--name", "S1"]
    command += ["--key-file", str(key_file), "--watch-dir", str(tmp_path / "ports")]
    station = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert station.stderr is not None
        notice = station.stderr.readline()
        assert notice.startswith(f"edgeline station: MQTT broker at {broker.url} is unreachable (connection")
        assert f"spooling events in {key_file}.spool" in notice
        assert station.poll() is None, "the station must keep running without the broker"
        broker.start()
        assert _retained_online(broker, env["EDGELINE_TOPIC_ROOT"], timeout=20)
        station.send_signal(signal.SIGINT)
        assert station.wait(15) == 0
    finally:
        if station.poll() is None:
            station.kill()
            station.wait()
        broker.stop()


def _retained_online(broker: RestartableMosquitto, topic_root: str, timeout: float) -> bool:
    """Whether the station's retained status becomes online within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(status.online for status in _retained_statuses(broker, topic_root)):
            return True
    return False


def _retained_statuses(broker: RestartableMosquitto, topic_root: str) -> list[StationStatus]:
    """What a new subscriber to station S1's status topic receives within half a second."""
    statuses: list[StationStatus] = []

    def on_message(message: InboundMessage) -> None:
        status = decode(message.payload).message
        assert isinstance(status, StationStatus)
        statuses.append(status)
        message.ack()

    reader = PahoBus.from_url(broker.url, f"reader-{time.monotonic_ns()}", clean_session=True)
    try:
        reader.connect()
        reader.subscribe(Topics(topic_root).station_status(Settings().line, "S1"), on_message)
        time.sleep(0.5)
    finally:
        reader.close()
    return statuses
