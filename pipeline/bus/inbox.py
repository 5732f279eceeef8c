"""Hands received messages to their handlers on one worker thread, in arrival order.

Why a separate thread: handlers commit to the database and may block; running them on the MQTT
network thread would stall keep-alives and PUBACKs of publishes. One thread keeps the broker's order.

Responsible for: routing a message to the handler of the first matching subscription, running it,
and logging (never the payload) when a handler raises, in which case the message stays un-acked and
the broker redelivers it after the next reconnect. A message that no subscription matches yet (a
persistent session delivers its backlog right after CONNACK, possibly before `subscribe` was called)
is parked un-acked and handed over as soon as a matching subscription is added.
Not responsible for: MQTT itself (pipeline.bus.paho) or decoding payloads (pipeline.bus.cloudevents).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from pipeline.bus.ports import InboundMessage, MessageHandler

log = logging.getLogger(__name__)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches the MQTT `topic_filter` (`+` one level, `#` the rest)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False  # MQTT-4.7.2-1: wildcards never match $SYS-like topics at the first level
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or level not in ("+", topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A topic filter (without any `$share/` prefix) and its handler."""

    topic_filter: str
    handler: MessageHandler
    shared_group: str | None = None


class Inbox:
    """A queue of received messages and the daemon thread that runs their handlers."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[InboundMessage | None] = queue.Queue()
        self._subscriptions: list[Subscription] = []
        self._parked: list[InboundMessage] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"edgeline-bus-{name}", daemon=True)
        self._thread.start()

    def add(self, subscription: Subscription) -> None:
        """Route matching messages to `subscription` from now on, parked ones included."""
        with self._lock:
            self._subscriptions.append(subscription)
            ready = [m for m in self._parked if topic_matches(subscription.topic_filter, m.topic)]
            self._parked = [m for m in self._parked if not topic_matches(subscription.topic_filter, m.topic)]
        for message in ready:
            self._queue.put(message)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        with self._lock:
            return tuple(self._subscriptions)

    def put(self, message: InboundMessage) -> None:
        """Queue `message` (called from the network thread; never blocks)."""
        self._queue.put(message)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the handler now running (queued messages stay un-acked and are redelivered)."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            self._dispatch(message)

    def _dispatch(self, message: InboundMessage) -> None:
        with self._lock:
            subscription = next(
                (s for s in self._subscriptions if topic_matches(s.topic_filter, message.topic)), None
            )
            if subscription is None:
                # Un-acked, it holds one of the broker's in-flight slots (Mosquitto: 20 per client).
                log.info(
                    "no handler yet for a %d-byte message on %s; held until one subscribes",
                    len(message.payload),
                    message.topic,
                )
                self._parked.append(message)
                return
        try:
            subscription.handler(message)
        except Exception:
            log.exception(
                "handler for %s failed on a %d-byte message on %s; left un-acked for redelivery",
                subscription.topic_filter,
                len(message.payload),
                message.topic,
            )
