"""Shared pieces of the end-to-end tests: a bus sniffer, running the CLI, dumping a database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

REPO = Path(__file__).resolve().parents[2]


class Sniffer:
    """Records every message on a broker (`#`), as an MES integration would see them."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-sniffer")
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe("#", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(5), "sniffer could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def stop(self) -> list[tuple[str, bytes]]:
        self._client.loop_stop()
        self._client.disconnect()
        with self._lock:
            return list(self.messages)


def edgeline(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `edgeline` CLI as a user would (a separate process)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def dump_postgres(url: str) -> str:
    """Every row of every table of a PostgreSQL database, as text (for leak checks)."""
    parts: list[str] = []
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        ]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():  # type: ignore[arg-type]
                parts.extend(
                    v.hex() + " " + v.decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v)
                    for v in (bytes(x) if isinstance(x, memoryview) else x for x in row)
                )
    return "\n".join(parts)
