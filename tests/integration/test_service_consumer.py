"""Consumer and OutboxRelay over a real Mosquitto broker, with the real handlers and database."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import service_helpers
from service_helpers import World, new_identity, registration_id, scan
from test_bus_paho import Collector  # records and acks

from pipeline.bus.cloudevents import Envelope, decode, encode
from pipeline.bus.contract import validate_published
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import InboundMessage
from pipeline.db.transient import is_transient_db_error, is_write_conflict
from pipeline.domain.events import Message, UnitKeyed, UnitScanned
from pipeline.domain.model import UnitState
from pipeline.service.consumer import CONFLICT_RETRIES, Consumer
from pipeline.service.context import Context
from pipeline.service.messagebus import HANDLERS
from pipeline.service.outbox_relay import OutboxRelay

# fixtures `shared_emulator` and `world` (tests/integration/service_helpers.py)
shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture

if TYPE_CHECKING:
    from conftest import Mosquitto

pytestmark = pytest.mark.mosquitto


class Running:
    """A consumer on its own bus, plus a test client subscribed to the dead-letter topics."""

    def __init__(self, ctx: Context, worker: PahoBus, probe: PahoBus) -> None:
        self.ctx, self.worker, self.probe = ctx, worker, probe
        self.deadletters = Collector()
        probe.subscribe(f"{ctx.topics.base}/deadletter/#", self.deadletters)
        self.consumer = Consumer(ctx, worker, HANDLERS, is_transient_db_error)
        self.consumer.start()

    def publish_from(self, station: str, message: Message, line: str = "line1") -> None:
        _, payload = encode(message, source=f"edgeline/stations/{station}")
        self.probe.publish(self.ctx.topics.station_event(line, station, message.NAME), payload)

    def deadletter(self, index: int) -> tuple[str, dict[str, object]]:
        message = self.deadletters.wait_for(index + 1)[index]
        # What MES integrations rely on: the published dead-letter contract (docs/asyncapi.yaml).
        validate_published(message.topic, message.payload, root=self.ctx.topics.root)
        return message.topic, json.loads(message.payload)


def connect(url: str) -> PahoBus:
    bus = PahoBus.from_url(
        url, f"test-{uuid.uuid4().hex[:10]}", clean_session=True, shared_subscriptions=False
    )
    bus.connect(timeout=5)
    return bus


@pytest.fixture
def running(world: World, mosquitto: Mosquitto, request: pytest.FixtureRequest) -> Iterator[Running]:
    ctx = world.line_ready(getattr(request, "param", "group"))  # indirect parametrisation: the mode
    worker, probe = connect(mosquitto.url), connect(mosquitto.url)
    run = Running(ctx, worker, probe)
    yield run
    run.consumer.stop()
    worker.close()
    probe.close()


def wait_for_state(world: World, rid: str, state: UnitState, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with world.db.uow() as uow:
            unit = uow.units.get(rid)
        if unit is not None and unit.state is state:
            return
        assert time.monotonic() < deadline, f"{rid} is {unit.state if unit else 'missing'}, not {state}"
        time.sleep(0.05)


def test_bad_messages_are_dead_lettered_and_the_worker_keeps_going(world: World, running: Running) -> None:
    base = running.ctx.topics.base
    garbage = b"\x00not json at all"
    running.probe.publish(running.ctx.topics.station_event("line1", "S1", "unit.scanned"), garbage)
    topic, body = running.deadletter(0)
    assert topic == f"{base}/deadletter/invalid"
    assert body["reason"] == "invalid"
    assert "JSON" in str(body["detail"])
    assert base64.b64decode(str(body["payload_base64"])) == garbage

    running.publish_from("S2", scan(station="S1"))  # S2 speaking for S1
    topic, body = running.deadletter(1)
    assert topic == f"{base}/deadletter/forged"
    assert "S2" in str(body["detail"]) and "S1" in str(body["detail"])

    _, mac = new_identity()
    bad = UnitScanned(
        registration_id="sn-007-888-mac-" + mac.lower().replace(":", "-"),
        serial="007_888",
        mac=mac,
        line="line1",
        station="S1",
        port="p1",
    )
    running.publish_from("S1", bad)  # built by hand: a real station would have refused it
    topic, body = running.deadletter(2)
    assert topic == f"{base}/deadletter/rejected"
    assert "'_'" in str(body["detail"])

    good = scan(station="S1")
    running.publish_from("S1", good)
    wait_for_state(world, good.registration_id, UnitState.CONFIG_ISSUED)
    with world.db.uow() as uow:
        assert uow.units.count_by_state() == {"config_issued": 1}
    assert len(running.deadletters.messages) == 3


@pytest.mark.parametrize("running", ["individual"], indirect=True)
def test_unit_events_flow_through_relay_and_consumer(world: World, running: Running) -> None:
    """Scan -> keyed -> enrolled -> config_issued, each event published by the relay and consumed
    (individual mode: a group-mode unit takes the three steps in one transaction)."""
    unit_events = Collector()
    running.probe.subscribe(running.ctx.topics.all_unit_events(), unit_events)
    relay = OutboxRelay(world.db.uow, running.worker, world.clock, is_transient_db_error)
    message = scan(*new_identity(), station="S1")

    running.publish_from("S1", message)
    wait_for_state(world, message.registration_id, UnitState.KEYED)
    assert relay.run_once() == 1
    wait_for_state(world, message.registration_id, UnitState.ENROLLED)

    assert relay.run_once() == 1
    wait_for_state(world, message.registration_id, UnitState.CONFIG_ISSUED)
    assert relay.run_once() == 1  # the FlashConfig command to S1
    with world.db.uow() as uow:
        assert uow.outbox.pending(100) == []
    received = [decode(m.payload) for m in unit_events.wait_for(2)]
    assert [type(e.message).__name__ for e in received] == ["UnitKeyed", "UnitEnrolled"]
    assert isinstance(received[0].message, UnitKeyed)
    assert received[0].message.registration_id == registration_id(message.serial, message.mac)
    assert relay.run_once() == 0


def _real_integrity_error(world: World) -> Exception:
    """Provoke a genuine unique violation in the test database (the same processed-message id twice)."""
    event_id = str(uuid.uuid4())
    with world.db.uow() as uow:
        uow.processed.record(event_id, "probe", world.clock())
        uow.commit()
    try:
        with world.db.uow() as uow:
            uow.processed.record(event_id, "probe", world.clock())
            uow.commit()
    except Exception as exc:
        assert is_write_conflict(exc), exc
        return exc
    raise AssertionError("no unique violation")


def _inbound(ctx: Context, message: UnitScanned, acks: list[bool]) -> InboundMessage:
    """The message as the bus hands it over, its ack recorded."""
    _, payload = encode(message, source=f"edgeline/stations/{message.station}")
    topic = ctx.topics.station_event(message.line, message.station, message.NAME)
    return InboundMessage(topic=topic, payload=payload, ack=lambda: acks.append(True))


def test_a_write_conflict_is_retried_and_then_the_handler_sees_the_row(
    world: World, running: Running
) -> None:
    ctx = running.ctx
    calls: list[int] = []

    def keyer_racing_another_worker(handler_ctx: Context, envelope: Envelope) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise _real_integrity_error(world)  # what the loser of a two-worker race gets
        HANDLERS[UnitScanned](handler_ctx, envelope)

    consumer = Consumer(
        ctx,
        running.worker,
        {UnitScanned: keyer_racing_another_worker},
        is_transient_db_error,
        is_conflict=is_write_conflict,
    )
    serial, mac = new_identity()
    acks: list[bool] = []
    consumer.on_message(_inbound(ctx, scan(serial, mac), acks))

    assert (len(calls), acks) == (2, [True])
    wait_for_state(world, registration_id(serial, mac), UnitState.CONFIG_ISSUED)
    assert running.deadletters.messages == []


def test_a_conflict_that_persists_goes_to_the_dead_letter_topic(world: World, running: Running) -> None:
    ctx = running.ctx
    calls: list[int] = []

    def always_conflicting(handler_ctx: Context, envelope: Envelope) -> None:
        calls.append(1)
        raise _real_integrity_error(world)

    consumer = Consumer(
        ctx,
        running.worker,
        {UnitScanned: always_conflicting},
        is_transient_db_error,
        is_conflict=is_write_conflict,
    )
    serial, mac = new_identity()
    acks: list[bool] = []
    consumer.on_message(_inbound(ctx, scan(serial, mac), acks))

    assert len(calls) == 1 + CONFLICT_RETRIES and acks == [True]
    topic, body = running.deadletter(0)
    assert topic.endswith("/deadletter/handler-error") and "IntegrityError" in str(body["detail"])
