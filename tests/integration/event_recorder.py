"""A subscriber that records every station event, decoded: the pipeline's ears, for station tests."""

from __future__ import annotations

import json
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
        self.ids: list[str] = []
        self.fresh: list[str] = []  # ids of publishes the broker did not flag as redelivered
        self._lock = threading.Lock()
        self.bus = PahoBus.from_url(broker.url, f"recorder-{topic_root}", clean_session=False)
        self.bus.connect()
        self.bus.subscribe(Topics(topic_root).all_station_events(), self._on_message)

    def _on_message(self, message: InboundMessage) -> None:
        with self._lock:
            self.ids.append(json.loads(message.payload)["id"])
            if not message.redelivered:
                self.fresh.append(self.ids[-1])
            self.events.append(decode(message.payload).message)
        message.ack()

    def scans(self) -> list[UnitScanned]:
        with self._lock:
            return [e for e in self.events if isinstance(e, UnitScanned)]

    def received(self) -> list[str]:
        """Distinct event ids in order of first arrival (the pipeline drops repeats by id, too).

        A broker restart may redeliver a message whose PUBACK it lost (QoS 1 is at-least-once); such
        repeats arrive flagged as redelivered and are not the station sending twice.
        """
        with self._lock:
            return list(dict.fromkeys(self.ids))

    def sent_twice(self) -> list[str]:
        """Ids that arrived more than once as fresh (not redelivered) publishes."""
        with self._lock:
            return sorted({i for i in self.fresh if self.fresh.count(i) > 1})

    def close(self) -> None:
        self.bus.close()
