"""PahoBus against real brokers: a private Mosquitto process and the embedded amqtt broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pipeline.bus.embedded import EmbeddedBroker
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import BusError, InboundMessage, Will

if TYPE_CHECKING:
    from tests.conftest import Mosquitto


class Collector:
    """A handler that records messages and acks them unless told not to."""

    def __init__(self, ack: bool = True) -> None:
        self.ack = ack
        self.messages: list[InboundMessage] = []
        self._cond = threading.Condition()

    def __call__(self, message: InboundMessage) -> None:
        if self.ack:
            message.ack()
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[InboundMessage]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"got {len(self.messages)} of {count} messages"
            )
            return list(self.messages)

    @property
    def payloads(self) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages]


@pytest.fixture
def clients() -> Iterator[list[PahoBus]]:
    """Every bus a test makes; all closed afterwards."""
    made: list[PahoBus] = []
    yield made
    for bus in made:
        bus.close()


def make(clients: list[PahoBus], url: str, client_id: str, **kwargs: Any) -> PahoBus:
    bus = PahoBus.from_url(url, client_id, **kwargs)
    clients.append(bus)
    return bus


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_round_trip_on_mosquitto(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str, protocol: Any
) -> None:
    received = Collector()
    sub = make(clients, mosquitto.url, f"{topic_root}-sub", protocol=protocol)
    sub.subscribe(f"{topic_root}/#", received)
    sub.connect(5)
    pub = make(clients, mosquitto.url, f"{topic_root}-pub", protocol=protocol)
    pub.connect(5)
    for i in range(3):
        pub.publish(f"{topic_root}/a/{i}", b"m%d" % i, timeout=5)
    assert [m.payload for m in received.wait_for(3)] == [b"m0", b"m1", b"m2"]
    assert sub.connected and pub.connected


def test_round_trip_on_embedded_broker(
    embedded_broker: EmbeddedBroker, clients: list[PahoBus], topic_root: str
) -> None:
    received = Collector()
    sub = make(clients, embedded_broker.url, f"{topic_root}-sub", shared_subscriptions=False)
    sub.subscribe(f"{topic_root}/#", received, shared_group="workers")  # plain subscription on amqtt
    sub.connect(5)
    pub = make(clients, embedded_broker.url, f"{topic_root}-pub")
    pub.connect(5)
    for i in range(3):
        pub.publish(f"{topic_root}/x", b"%d" % i, timeout=5)
    assert received.wait_for(3)[-1].topic == f"{topic_root}/x"
    assert received.payloads == [b"0", b"1", b"2"]


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_unacked_message_is_redelivered_after_reconnect(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str, protocol: Any
) -> None:
    forgetful = Collector(ack=False)
    first = make(clients, mosquitto.url, f"{topic_root}-worker", protocol=protocol)
    first.subscribe(f"{topic_root}/#", forgetful)
    first.connect(5)
    pub = make(clients, mosquitto.url, f"{topic_root}-pub")
    pub.connect(5)
    pub.publish(f"{topic_root}/job", b"job-1", timeout=5)
    assert forgetful.wait_for(1)[0].redelivered is False
    first.close()  # "crashed" before its DB commit: never acked

    diligent = Collector()
    second = make(
        clients, mosquitto.url, f"{topic_root}-worker", protocol=protocol
    )  # same client id, persistent session
    second.subscribe(f"{topic_root}/#", diligent)
    second.connect(5)
    again = diligent.wait_for(1)[0]
    assert (again.payload, again.redelivered) == (b"job-1", True)
    second.close()

    third_seen = Collector()
    third = make(clients, mosquitto.url, f"{topic_root}-worker", protocol=protocol)
    third.subscribe(f"{topic_root}/#", third_seen)
    third.connect(5)
    time.sleep(0.3)
    assert third_seen.payloads == []  # acked by the second worker: gone for good


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_messages_published_while_subscriber_is_down_are_delivered(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str, protocol: Any
) -> None:
    sub = make(clients, mosquitto.url, f"{topic_root}-worker", protocol=protocol)
    sub.subscribe(f"{topic_root}/#", Collector())
    sub.connect(5)
    sub.close()
    pub = make(clients, mosquitto.url, f"{topic_root}-pub")
    pub.connect(5)
    for i in range(5):
        pub.publish(f"{topic_root}/e", b"%d" % i, timeout=5)

    received = Collector()
    back = make(clients, mosquitto.url, f"{topic_root}-worker", protocol=protocol)
    back.subscribe(f"{topic_root}/#", received)
    back.connect(5)
    assert [m.payload for m in received.wait_for(5)] == [b"0", b"1", b"2", b"3", b"4"]


@pytest.mark.mosquitto
def test_shared_subscription_splits_messages(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    a, b = Collector(), Collector()
    for name, handler in (("a", a), ("b", b)):
        bus = make(clients, mosquitto.url, f"{topic_root}-{name}")
        bus.subscribe(f"{topic_root}/#", handler, shared_group=f"{topic_root}-workers")
        bus.connect(5)
    pub = make(clients, mosquitto.url, f"{topic_root}-pub")
    pub.connect(5)
    sent = [b"%d" % i for i in range(20)]
    for payload in sent:
        pub.publish(f"{topic_root}/job", payload, timeout=5)
    deadline = time.monotonic() + 5
    while len(a.payloads) + len(b.payloads) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(a.payloads + b.payloads) == sorted(sent)  # each exactly once
    assert a.payloads and b.payloads  # and both got some


_DYING_CLIENT = """
import sys, time
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import Will
url, client_id, topic = sys.argv[1:4]
bus = PahoBus.from_url(url, client_id, will=Will(topic, b"offline"))
bus.connect(5)
bus.publish(topic, b"online", retain=True)
print("up", flush=True)
time.sleep(60)
"""


@pytest.mark.mosquitto
def test_last_will_is_published_retained_when_a_client_dies(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    status = f"{topic_root}/stations/S1/status"
    child = subprocess.Popen(
        [sys.executable, "-c", _DYING_CLIENT, mosquitto.url, f"{topic_root}-S1", status],
        stdout=subprocess.PIPE,
        cwd=os.getcwd(),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"up"
        child.send_signal(signal.SIGKILL)  # the kernel closes the socket: no DISCONNECT is ever sent
        child.wait(5)
    finally:
        child.kill()
    late = Collector()  # subscribes only after the death: sees the will because it was retained
    observer = make(clients, mosquitto.url, f"{topic_root}-observer", clean_session=True)
    observer.subscribe(status, late)
    observer.connect(5)
    assert late.wait_for(1)[0].payload == b"offline"


@pytest.mark.mosquitto
def test_clean_close_does_not_send_the_will(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    status = f"{topic_root}/status"
    station = make(clients, mosquitto.url, f"{topic_root}-S1", will=Will(status, b"offline"))
    station.connect(5)
    station.publish(status, b"online", retain=True, timeout=5)
    station.close()
    seen = Collector()
    observer = make(clients, mosquitto.url, f"{topic_root}-observer", clean_session=True)
    observer.subscribe(status, seen)
    observer.connect(5)
    time.sleep(0.3)
    assert seen.payloads == [b"online"]


@pytest.mark.mosquitto
def test_publishing_resumes_after_broker_restart(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    received = Collector()
    sub = make(clients, mosquitto.url, f"{topic_root}-sub")
    sub.subscribe(f"{topic_root}/#", received)
    sub.connect(5)
    pub = make(clients, mosquitto.url, f"{topic_root}-pub")
    pub.connect(5)
    pub.publish(f"{topic_root}/t", b"before", timeout=5)
    received.wait_for(1)

    mosquitto.stop()
    deadline = time.monotonic() + 5
    while pub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pub.connected
    mosquitto.start()

    pub.publish(f"{topic_root}/t", b"after", timeout=10)  # waits for the reconnect, then for PUBACK
    assert [m.payload for m in received.wait_for(2, timeout=10)] == [b"before", b"after"]
    assert sub.connected


def test_connect_to_a_dead_broker_says_what_is_wrong(clients: list[PahoBus], free_tcp_port: int) -> None:
    port = free_tcp_port
    bus = make(clients, f"mqtt://127.0.0.1:{port}", "nobody-home")
    started = time.monotonic()
    with pytest.raises(BusError) as caught:
        bus.connect(timeout=1.0)
    assert time.monotonic() - started < 2.5
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message
    assert "EDGELINE_MQTT_URL" in message


def test_publish_to_a_dead_broker_raises_within_the_timeout(
    clients: list[PahoBus], free_tcp_port: int
) -> None:
    port = free_tcp_port
    bus = make(clients, f"mqtt://127.0.0.1:{port}", "nobody-home")
    started = time.monotonic()
    with pytest.raises(BusError, match=rf"edgeline/x.*127\.0\.0\.1:{port}.*connection refused"):
        bus.publish("edgeline/x", b"{}", timeout=0.5)
    assert time.monotonic() - started < 2.0


@pytest.mark.mosquitto
def test_publish_after_broker_died_raises_within_the_timeout(
    mosquitto: Mosquitto, clients: list[PahoBus], topic_root: str
) -> None:
    pub = make(clients, mosquitto.url, f"{topic_root}-pub")
    pub.connect(5)
    mosquitto.stop()
    started = time.monotonic()
    with pytest.raises(BusError, match="connection refused"):
        pub.publish(f"{topic_root}/t", b"lost?", timeout=1.0)
    assert time.monotonic() - started < 3.0
