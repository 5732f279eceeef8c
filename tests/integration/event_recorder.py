"""A subscriber that records every station event, decoded: the pipeline's ears, for station tests."""

from __future__ import annotations

import threading

from conftest import Mosquitto

from pipeline.bus.cloudevents import decode
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.bus.topics import Topics
from pipeline.domain.events import Message, UnitScanned


class EventRecorder:
    """A persistent-session subscriber to every station event (as the pipeline would be)."""

    def __init__(self, broker: Mosquitto, topic_root: str) -> None:
        self.events: list[Message] = []
        self._lock = threading.Lock()
        self.bus = PahoBus.from_url(broker.url, f"recorder-{topic_root}", clean_session=False)
        self.bus.connect()
        self.bus.subscribe(Topics(topic_root).all_station_events(), self._on_message)

    def _on_message(self, message: InboundMessage) -> None:
        with self._lock:
            self.events.append(decode(message.payload).message)
        message.ack()

    def scans(self) -> list[UnitScanned]:
        with self._lock:
            return [e for e in self.events if isinstance(e, UnitScanned)]

    def close(self) -> None:
        self.bus.close()
