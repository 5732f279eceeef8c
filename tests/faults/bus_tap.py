"""A test's own MQTT client on the line's broker: records station events and publishes forged ones.

Responsible for: capturing what the stations publish (topic, payload) and re-publishing it as-is,
reordered, re-timed or re-identified, as a flaky network or an attacker on the bus would.
Not responsible for: judging the line's reaction (the scenarios and the harness do).
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt


class BusTap:
    """Subscribes to every station event under `topic_root`; `replay()` publishes captured ones."""

    def __init__(self, port: int, topic_root: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tap-{secrets.token_hex(4)}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"{topic_root}/v1/lines/+/stations/+/events/#", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(10), "the bus tap could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def captured(self, kind: str = "") -> list[tuple[str, bytes]]:
        """Captured station events whose topic ends with `kind` (all if empty)."""
        with self._lock:
            return [(t, p) for t, p in self.messages if t.endswith(kind)]

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def retimed(payload: bytes, *, hours: float, new_id: bool) -> bytes:
    """The same CloudEvent `hours` older, with its own id or a fresh one (a forged replay)."""
    event = json.loads(payload)
    event["time"] = (datetime.now(UTC) - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    if new_id:
        event["id"] = str(uuid.uuid4())
    return json.dumps(event).encode()


def restationed(topic: str, payload: bytes, station: str) -> tuple[str, bytes]:
    """The event as if another station had sent it (a takeover attempt), with a fresh id."""
    event = json.loads(payload)
    old = topic.split("/stations/")[1].split("/")[0]
    event["id"] = str(uuid.uuid4())
    event["source"] = f"edgeline/stations/{station}"
    if isinstance(event.get("data"), dict) and "station" in event["data"]:
        event["data"]["station"] = station
    return topic.replace(f"/stations/{old}/", f"/stations/{station}/"), json.dumps(event).encode()
