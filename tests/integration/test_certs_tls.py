"""`edgeline certs`: certificates it makes let a real Mosquitto TLS listener accept our bus adapter,
and a broker that requires client certificates refuses a client without one."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import BusError, InboundMessage
from pipeline.bus.url import TlsFiles

pytestmark = pytest.mark.mosquitto
REPO = Path(__file__).resolve().parents[2]


def _edgeline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    for args in (("init",), ("broker", "--host", "127.0.0.1"), ("worker", "w1"), ("station", "S1")):
        done = _edgeline("certs", *args, "--dir", str(folder))
        assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Path) -> Iterator[int]:
    port = free_port()
    config = tmp_path / "tls.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'broker.pem'}\nkeyfile {certs / 'broker.key'}\n"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
        f"log_dest file {tmp_path / 'tls.log'}\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, timeout=10)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def test_keys_are_private_and_files_are_not_overwritten(certs: Path) -> None:
    for key in ("ca.key", "broker.key", "worker-w1.key", "station-S1.key"):
        assert stat.S_IMODE((certs / key).stat().st_mode) == 0o600, key
    again = _edgeline("certs", "init", "--dir", str(certs))
    assert again.returncode == 2 and "exists; use --force" in again.stderr
    missing = _edgeline("certs", "station", "S2", "--dir", str(certs.parent / "nowhere"))
    assert missing.returncode == 2 and "certs init" in missing.stderr


def test_a_client_certificate_from_the_site_ca_is_accepted(certs: Path, tls_broker: int) -> None:
    tls = TlsFiles(str(certs / "ca.pem"), str(certs / "worker-w1.pem"), str(certs / "worker-w1.key"))
    bus = PahoBus.from_url(f"mqtts://127.0.0.1:{tls_broker}", "tls-w1", tls=tls, clean_session=True)
    got: list[bytes] = []
    arrived = threading.Event()

    def handler(message: InboundMessage) -> None:
        got.append(message.payload)
        message.ack()
        arrived.set()

    try:
        bus.subscribe("tls/#", handler)
        bus.connect(10)
        bus.publish("tls/hello", b"over TLS", timeout=10)
        assert arrived.wait(10) and got == [b"over TLS"]
    finally:
        bus.close()


def test_a_client_without_a_certificate_is_refused(certs: Path, tls_broker: int) -> None:
    bus = PahoBus.from_url(
        f"mqtts://127.0.0.1:{tls_broker}", "tls-nobody", ca_file=str(certs / "ca.pem"), clean_session=True
    )
    try:
        with pytest.raises(BusError):
            bus.connect(5)
    finally:
        bus.close()


def test_the_shipped_broker_config_serves_its_tls_listener_with_edgeline_certs(
    tmp_path: Path, certs: Path
) -> None:
    """deploy/mosquitto/mosquitto.conf as compose runs it: its 8883 listener with `edgeline certs` files."""
    plain, tls_port = free_port(), free_port()
    passwd = tmp_path / "passwd"
    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([passwd_tool, "-b", "-c", str(passwd), "worker", "secret-w"], check=True)
    paths = {
        "listener 1883": f"listener {plain} 127.0.0.1",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "/mosquitto/tls/": f"{certs}/",
        "/mosquitto/auth/passwd": str(passwd),
        "/mosquitto/config/acl": str(REPO / "deploy" / "mosquitto" / "acl"),
        "/mosquitto/data/": f"{tmp_path}/",
        "log_dest stdout": f"log_dest file {tmp_path / 'broker.log'}",
    }
    text = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for shipped, here in paths.items():
        assert shipped in text, f"mosquitto.conf no longer has {shipped!r}"
        text = text.replace(shipped, here)
    config = tmp_path / "mosquitto.conf"
    config.write_text(text + ("user root\n" if os.geteuid() == 0 else ""))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(tls_port, timeout=10)
        url = f"mqtts://worker:secret-w@127.0.0.1:{tls_port}"
        bus = PahoBus.from_url(url, "tls-default-probe", tls=TlsFiles(ca_file=str(certs / "ca.pem")))
        try:
            bus.connect(timeout=10)
            bus.publish("edgeline/v1/units/events/probe", b"{}", timeout=10)  # the worker's own topic tree
        finally:
            bus.close()
        untrusted = PahoBus.from_url(url, "tls-untrusted-probe")  # the system trust store: no site CA
        with pytest.raises(BusError):
            untrusted.connect(timeout=5)
        untrusted.close()
    finally:
        process.terminate()
        process.wait(5)
