"""`edgeline station add --mqtt-passwd --mqtt-acl`: a real Mosquitto lets the new station log in with the
printed password and publish under its own prefix only."""

from __future__ import annotations

import os
import queue
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import free_port, wait_for_port

from pipeline.bus.topics import Topics
from pipeline.crypto.mqtt_passwd import set_password

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(60)]
REPO = Path(__file__).resolve().parents[2]
ROOT = "edgeline"


def _edgeline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def added(tmp_path: Path) -> tuple[Path, Path, str]:
    """Station S1 added with broker access; returns (passwd, acl, password)."""
    env = {"EDGELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}", "EDGELINE_TOPIC_ROOT": ROOT}
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    acl.write_text("user watcher\ntopic read #\n")
    _edgeline(env, "db", "upgrade")
    public = _edgeline(env, "station", "init", "--key-file", str(tmp_path / "S1.key")).stdout.strip()
    out = _edgeline(
        env,
        "station",
        "add",
        "S1",
        f"--public-key={public}",
        "--mqtt-passwd",
        str(passwd),
        "--mqtt-acl",
        str(acl),
    )
    match = re.search(r"MQTT password \(shown once; store it on the station\): (\S+)", out.stdout)
    assert match, out.stdout
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert match.group(1) not in passwd.read_text()
    set_password(passwd, "watcher", "watcher-secret")
    return passwd, acl, match.group(1)


@pytest.fixture
def broker(tmp_path: Path, added: tuple[Path, Path, str]) -> Iterator[int]:
    passwd, acl, _ = added
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        f"log_dest file {tmp_path / 'mosquitto.log'}\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    process = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)])
    try:
        wait_for_port(port, timeout=10)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def _client(port: int, user: str, password: str) -> tuple[mqtt.Client, int]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}")
    client.username_pw_set(user, password)
    codes: queue.Queue[int] = queue.Queue()
    client.on_connect = lambda c, u, f, reason, p: codes.put(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, codes.get(timeout=10)


def test_the_new_station_publishes_under_its_own_prefix_only(
    broker: int, added: tuple[Path, Path, str]
) -> None:
    topics = Topics(ROOT)
    watcher, code = _client(broker, "watcher", "watcher-secret")
    assert code == 0
    seen: queue.Queue[str] = queue.Queue()
    watcher.on_message = lambda c, u, message: seen.put(message.topic)
    watcher.subscribe("#", qos=1)
    station, code = _client(broker, "S1", added[2])
    assert code == 0, "the printed password was refused"
    foreign = topics.station_event("line1", "S2", "unit.scanned")
    own = topics.station_event("line1", "S1", "unit.scanned")
    time.sleep(0.5)  # the watcher's SUBACK
    station.publish(foreign, b"forged", qos=1).wait_for_publish(5)
    station.loop_stop()  # Mosquitto drops a denied PUBLISH and may close the connection: log in again
    station, _ = _client(broker, "S1", added[2])
    station.publish(own, b"mine", qos=1).wait_for_publish(5)
    assert seen.get(timeout=5) == own  # the forbidden one, published first, never arrived
    assert seen.empty()
    _, refused = _client(broker, "S1", "wrong-password")
    assert refused != 0
