"""The shipped broker config and ACL (deploy/mosquitto) against a real Mosquitto, with real logins.

Mosquitto accepts every SUBSCRIBE and filters on delivery. It drops a denied QoS 1 PUBLISH, answers
it with PUBACK reason code 135 (not authorized; MQTT 5 clients see it, 3.1.1 clients cannot) and then
closes the connection (Mosquitto 2.0.11, both protocols; MQTT-3.3.5-2 allows closing): the client
reconnects with a fresh session. Most tests use MQTT 5 to see the reason codes. Each "not delivered"
check publishes the forbidden message first and an allowed one second on the same connection: once the
allowed one has arrived, the forbidden one would have arrived before it (MQTT keeps order per publisher
and subscription).
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipeline.bus.topics import Topics

pytestmark = pytest.mark.timeout(30)

T = Topics()  # the real root: the ACL is written for `edgeline/v1/...`
LINE = "line1"
USERS = {"S1": "s1-secret", "S2": "s2-secret", "worker": "worker-secret", "mes": "mes-secret"}
WAIT = 5.0
NOT_AUTHORIZED = 135  # PUBACK reason codes (MQTT 5)
ACCEPTED = (0, 16)  # success, no matching subscribers


class Client:
    """A paho 2.x client logged in as one user, collecting what it receives."""

    def __init__(
        self,
        port: int,
        username: str,
        password: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    ) -> None:
        self.username = username
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected: queue.Queue[object] = queue.Queue()
        self.disconnected: queue.Queue[object] = queue.Queue()
        self.subscribed: queue.Queue[int] = queue.Queue()
        self.acks: dict[int, int] = {}
        self._acked = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"acl-test-{username}-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        self._client.username_pw_set(username, USERS[username] if password is None else password)
        self._client.on_connect = lambda _c, _u, _f, rc, _p: self.connected.put(rc)
        self._client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnected.put(rc)
        self._client.on_subscribe = lambda _c, _u, mid, _rc, _p: self.subscribed.put(mid)
        self._client.on_message = lambda _c, _u, msg: self.received.put((msg.topic, bytes(msg.payload)))
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_publish(self, _c: object, _u: object, mid: int, reason_code: object, _p: object) -> None:
        with self._acked:
            self.acks[mid] = int(getattr(reason_code, "value", 0))
            self._acked.notify_all()

    def wait_connected(self) -> object:
        return self.connected.get(timeout=WAIT)

    def subscribe(self, topic_filter: str) -> None:
        _, mid = self._client.subscribe(topic_filter, qos=1)
        while self.subscribed.get(timeout=WAIT) != mid:
            pass

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK reason code (0 = accepted, 16 = no subscribers)."""
        with self._acked:
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            if not self._acked.wait_for(lambda: info.mid in self.acks, WAIT):
                raise AssertionError(f"{self.username}: no PUBACK for {topic}")
            code = self.acks[info.mid]
        if code == NOT_AUTHORIZED:
            self.recover()
        return code

    def recover(self) -> None:
        """After a denied publish: wait for the broker to close the connection and paho to reconnect."""
        try:
            self.disconnected.get(timeout=2.0)
        except queue.Empty:
            return  # a broker that keeps the connection
        assert self.wait_connected() == 0

    def expect(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait for `payload`; return everything received before it (and it, last)."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                item = self.received.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(
                    f"{self.username} never received {payload!r}; got {[p for _, p in seen]}"
                ) from None
            seen.append(item)
            if item[1] == payload:
                return seen

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker_port(secured_mosquitto: Callable[[dict[str, str]], object]) -> int:
    broker = secured_mosquitto(USERS)
    return int(broker.port)  # type: ignore[attr-defined]


@pytest.fixture
def connect(broker_port: int) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(username: str, password: str | None = None) -> Client:
        client = Client(broker_port, username, password)
        clients.append(client)
        assert client.wait_connected() == 0, f"{username} could not log in"
        return client

    yield make
    for client in clients:
        client.close()


def payloads(items: list[tuple[str, bytes]]) -> list[bytes]:
    return [p for _, p in items]


def test_anonymous_and_wrong_password_are_refused(broker_port: int) -> None:
    wrong = Client(broker_port, "S1", "not-the-password")
    try:
        assert wrong.wait_connected() != 0
    finally:
        wrong.close()
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-anon-{uuid.uuid4().hex[:8]}")
    codes: queue.Queue[object] = queue.Queue()
    anonymous.on_connect = lambda _c, _u, _f, rc, _p: codes.put(rc)
    anonymous.connect("127.0.0.1", broker_port)  # no username at all
    anonymous.loop_start()
    try:
        assert codes.get(timeout=WAIT) != 0
    finally:
        anonymous.disconnect()
        anonymous.loop_stop()


def test_worker_gets_station_events_via_shared_subscription_but_not_forged_ones(
    connect: Callable[..., Client],
) -> None:
    worker = connect("worker")
    # exactly what `edgeline up` subscribes to (pipeline.bootstrap.WORKER_GROUP)
    worker.subscribe(f"$share/edgeline-workers/{T.all_station_events()}")
    s1 = connect("S1")
    s2 = connect("S2")

    assert s1.publish(T.station_event(LINE, "S2", "scanned"), b"forged-by-S1") == NOT_AUTHORIZED
    assert s1.publish(T.station_event("line2", "S2", "scanned"), b"forged-other-line") == NOT_AUTHORIZED
    assert s1.publish(T.station_event(LINE, "S1", "scanned"), b"S1-own") in ACCEPTED
    got = worker.expect(b"S1-own")
    assert payloads(got) == [b"S1-own"]
    assert got[0][0] == T.station_event(LINE, "S1", "scanned")

    # a station may use any line, but only under its own name
    assert s1.publish(T.station_event("line2", "S1", "flashed"), b"S1-line2") in ACCEPTED
    assert s2.publish(T.station_event(LINE, "S2", "flashed"), b"S2-own") in ACCEPTED
    assert payloads(worker.expect(b"S1-line2")) == [b"S1-line2"]
    assert payloads(worker.expect(b"S2-own")) == [b"S2-own"]


def test_station_publishes_own_status_only_and_no_pipeline_topics(connect: Callable[..., Client]) -> None:
    mes = connect("mes")
    mes.subscribe(f"{T.base}/#")
    s1 = connect("S1")

    assert s1.publish(T.station_status(LINE, "S2"), b"S2-forged", retain=True) == NOT_AUTHORIZED
    assert s1.publish(T.unit_event("assigned"), b"unit-event-forged") == NOT_AUTHORIZED
    assert s1.publish(T.deadletter("bad"), b"deadletter-forged") == NOT_AUTHORIZED
    assert s1.publish(T.station_status(LINE, "S1"), b"S1-online", retain=True) in ACCEPTED
    got = mes.expect(b"S1-online")
    assert payloads(got) == [b"S1-online"]
    assert got[0][0] == T.station_status(LINE, "S1")

    # the retained status was stored (a late subscriber gets it); the forged one was not
    late = connect("mes")
    late.subscribe(f"{T.base}/lines/{LINE}/stations/+/status")
    assert payloads(late.expect(b"S1-online")) == [b"S1-online"]


def test_station_reads_only_its_own_commands_and_cannot_forge_them(connect: Callable[..., Client]) -> None:
    s1 = connect("S1")
    s1.subscribe(f"{T.base}/#")  # accepted, but only its own commands are delivered
    s1.subscribe(f"$share/stations/{T.base}/#")  # a shared subscription gets no more
    worker = connect("worker")

    assert worker.publish(T.station_command(LINE, "S2", "flash"), b"config-for-S2") in ACCEPTED
    assert worker.publish(T.unit_event("keyed"), b"unit-event") in ACCEPTED
    assert worker.publish(T.station_event(LINE, "S2", "scanned"), b"worker-as-station") == NOT_AUTHORIZED
    s1_again = connect("S1")  # a second connection: a denied publish costs S1 its (clean) session
    assert s1_again.publish(T.station_command(LINE, "S1", "flash"), b"self-forged") == NOT_AUTHORIZED
    assert worker.publish(T.station_command(LINE, "S1", "flash"), b"config-for-S1") in ACCEPTED
    got = s1.expect(b"config-for-S1")
    assert payloads(got) == [b"config-for-S1"]
    assert got[0][0] == T.station_command(LINE, "S1", "flash")


def test_only_the_pipeline_tells_a_station_its_scan_was_refused(connect: Callable[..., Client]) -> None:
    s1 = connect("S1")
    s1.subscribe(T.commands_for(LINE, "S1"))
    worker = connect("worker")
    s2 = connect("S2")
    assert s2.publish(T.station_command(LINE, "S1", "unit.refused"), b"forged-refusal") == NOT_AUTHORIZED
    assert worker.publish(T.station_command(LINE, "S1", "unit.refused"), b"refused-for-S1") in ACCEPTED
    got = s1.expect(b"refused-for-S1")
    assert [topic for topic, _ in got] == [T.station_command(LINE, "S1", "unit.refused")]


def test_worker_publishes_unit_events_and_deadletters(connect: Callable[..., Client]) -> None:
    worker = connect("worker")
    worker.subscribe(f"$share/edgeline-workers/{T.all_unit_events()}")
    mes = connect("mes")
    mes.subscribe(f"{T.base}/#")

    assert worker.publish(T.unit_event("keyed"), b"keyed") in ACCEPTED
    assert worker.publish(T.deadletter("invalid-payload"), b"dead") in ACCEPTED
    assert payloads(worker.expect(b"keyed")) == [b"keyed"]
    assert payloads(mes.expect(b"keyed")) == [b"keyed"]
    assert payloads(mes.expect(b"dead")) == [b"dead"]


def test_mes_reads_unit_events_but_not_commands_and_cannot_publish(connect: Callable[..., Client]) -> None:
    mes = connect("mes")
    mes.subscribe("#")
    worker = connect("worker")
    worker.subscribe(f"$share/edgeline-workers/{T.all_unit_events()}")

    assert worker.publish(T.station_command(LINE, "S1", "flash"), b"secret-command") in ACCEPTED
    assert worker.publish(T.unit_event("enrolled"), b"enrolled") in ACCEPTED
    assert payloads(mes.expect(b"enrolled")) == [b"enrolled"]

    assert mes.publish(T.unit_event("assigned"), b"forged-by-mes") == NOT_AUTHORIZED
    assert worker.publish(T.unit_event("assigned"), b"real-assigned") in ACCEPTED
    assert b"forged-by-mes" not in payloads(worker.expect(b"real-assigned"))


def test_worker_publishes_sparkplug_and_reads_only_its_commands(connect: Callable[..., Client]) -> None:
    """edge: the Sparkplug publisher runs as `worker`; a SCADA dashboard as `mes` sees it read-only."""
    mes = connect("mes")
    mes.subscribe("spBv1.0/#")
    worker = connect("worker")
    worker.subscribe("spBv1.0/edgeline/NCMD/line1")

    for topic in ("spBv1.0/edgeline/NBIRTH/line1", "spBv1.0/edgeline/DDATA/line1/S1"):
        assert worker.publish(topic, topic.encode()) in ACCEPTED
        assert payloads(mes.expect(topic.encode()))[-1] == topic.encode()
    assert worker.publish("spBv1.0/edgeline/NCMD/line1", b"worker-ncmd") == NOT_AUTHORIZED
    # other connections: a denied publish costs the publisher its (clean) session and subscriptions
    assert connect("mes").publish("spBv1.0/edgeline/NBIRTH/line1", b"forged-birth") == NOT_AUTHORIZED
    assert connect("S1").publish("spBv1.0/edgeline/NDATA/line1", b"station-forged") == NOT_AUTHORIZED
    assert worker.publish("spBv1.0/edgeline/NDATA/line1", b"real-data") in ACCEPTED
    assert b"forged-birth" not in payloads(mes.expect(b"real-data"))


def test_mqtt311_forbidden_publish_is_dropped_and_the_client_recovers(broker_port: int) -> None:
    """edgeline's own clients speak MQTT 3.1.1: no reason code, the message is gone, paho reconnects."""
    worker = Client(broker_port, "worker")
    s1 = Client(broker_port, "S1", protocol=MQTTProtocolVersion.MQTTv311)
    try:
        assert worker.wait_connected() == 0
        assert s1.wait_connected() == 0
        worker.subscribe(f"$share/edgeline-workers/{T.all_station_events()}")
        assert s1.publish(T.station_event(LINE, "S2", "scanned"), b"forged-311") == 0  # looks accepted
        s1.recover()
        assert s1.publish(T.station_event(LINE, "S1", "scanned"), b"own-311") == 0
        assert payloads(worker.expect(b"own-311")) == [b"own-311"]
    finally:
        s1.close()
        worker.close()
