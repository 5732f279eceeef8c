"""The bus port: what the rest of edgeline may ask of an MQTT broker, and nothing more.

Callers never import paho. Adapters (`pipeline.bus.paho`) map library errors to `BusError`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass


class BusError(RuntimeError):
    """The broker could not be reached or did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A received message. Call `ack()` only after its effects are durable (committed)."""

    topic: str
    payload: bytes
    ack: Callable[[], None]
    redelivered: bool = False


MessageHandler = Callable[[InboundMessage], None]


@dataclass(frozen=True, slots=True)
class Will:
    """Last-will message the broker publishes if this client vanishes."""

    topic: str
    payload: bytes
    retain: bool = True


class Bus(abc.ABC):
    """Publish with QoS 1 (blocking until the broker acknowledged) and subscribe with manual ack."""

    @abc.abstractmethod
    def connect(self, timeout: float = 10.0) -> None:
        """Connect (and keep reconnecting in the background); raise BusError if not up within timeout."""

    @abc.abstractmethod
    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> None:
        """Publish at QoS 1 and wait for PUBACK; raise BusError if not acknowledged within timeout."""

    def publish_many(self, messages: list[tuple[str, bytes]], *, timeout: float = 10.0) -> int:
        """Publish several messages at QoS 1, in order; return how many the broker acknowledged.

        Stops at the first failure (raising BusError if none was acknowledged), so a caller can mark
        exactly the acknowledged prefix as sent. Adapters may pipeline the PUBACK waits.
        """
        for index, (topic, payload) in enumerate(messages):
            try:
                self.publish(topic, payload, timeout=timeout)
            except BusError:
                if index == 0:
                    raise
                return index
        return len(messages)

    @abc.abstractmethod
    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, shared_group: str | None = None
    ) -> None:
        """Subscribe at QoS 1; `handler` runs on a worker thread and must call `message.ack()`."""

    def on_connected(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every (re)connect from now on, off the network thread (it may publish).

        For state the broker may have lost or that may be stale after an outage, e.g. a retained
        presence message overwritten by the last will. Adapters that can tell override this.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot report (re)connects")

    def on_fatal(self, callback: Callable[[str], None]) -> None:
        """Call `callback(one-line reason)` if the client stops for good (e.g. its session taken over).

        Adapters that cannot fail that way never call it.
        """
        del callback  # nothing can end such a client for good, so there is nothing to report

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect cleanly (the last will is not sent)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the client currently has a broker connection."""
