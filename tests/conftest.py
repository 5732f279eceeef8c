"""Shared pytest fixtures. Each engineer keeps fixtures in a clearly marked section."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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
            "max_queued_messages 0\n"  # the default 1000 silently drops QoS 1 messages (notes §9)
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log}\n"
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
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text() if self.log.exists() else ''}")

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
        pytest.skip("mosquitto binary not installed")
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
