"""The consumer: turns bus messages into handler calls, acknowledging only after the handler committed.

For each message: decode (bad bytes -> dead-letter), check the topic matches the sender and type
(a station cannot speak for another), run the handler. A transient failure (database or broker down)
is retried with capped backoff and the message stays unacknowledged, so nothing is lost; a rejected
message or a handler bug goes to the dead-letter topic and is acknowledged, so one bad message never
blocks or crashes a worker.

With `workers > 1` handlers run on that many threads, each owning the units whose registration ID
hashes to it, so one unit's messages stay in order while different units overlap their database and
DPS round trips (acknowledgements may then go out of order, which MQTT allows).

Batches: a handler thread takes every message already queued for it (up to `batch_size`, never waiting
for more) and runs their handlers in ONE database transaction (each handler on a member unit of work),
then acknowledges them all after that commit. Batch preparers (pipeline.service.messagebus) first do
once for the batch what each handler would do per message (the keyer's identity locks and reads). If
anything in the batch fails (a rejected or poison message, a write conflict, the database) the
transaction is rolled back and the batch is handled again one message at a time with the rules above,
so one bad message never holds back or poisons the others.
Not responsible for: what handlers do, or publishing their events (the outbox relay).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Mapping
from time import monotonic

from pipeline import metrics
from pipeline.bus.cloudevents import DecodeError, Envelope, decode
from pipeline.bus.ports import Bus, BusError, InboundMessage
from pipeline.bus.topics import Topics
from pipeline.domain.events import Message
from pipeline.service.common import Rejected
from pipeline.service.context import Context
from pipeline.service.messagebus import STATION_MESSAGES, BatchPreparer, Handler

log = logging.getLogger(__name__)
_Work = tuple[Handler, Envelope, InboundMessage]
MAX_DEADLETTER_PAYLOAD = 4096
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONFLICT_RETRIES = 3


class Consumer:
    """Subscribes the pipeline's handlers to the bus."""

    def __init__(
        self,
        ctx: Context,
        bus: Bus,
        handlers: Mapping[type[Message], Handler],
        is_transient: Callable[[BaseException], bool],
        *,
        shared_group: str | None = None,
        workers: int = 1,
        is_conflict: Callable[[BaseException], bool] = lambda error: False,
        batch_size: int = 1,
        preparers: Mapping[type[Message], BatchPreparer] | None = None,
    ) -> None:
        self._ctx = ctx
        self._bus = bus
        self._handlers = handlers
        self._is_transient = is_transient
        self._is_conflict = is_conflict
        self._shared_group = shared_group
        self._batch_size = max(batch_size, 1)
        self._preparers = preparers or {}
        self._stopping = threading.Event()
        self._queues: list[queue.Queue[_Work | None]] = [
            queue.Queue() for _ in range(workers if workers > 1 else 0)
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the handler threads, then subscribe to every station event and pipeline event topic."""
        for index, work in enumerate(self._queues):
            thread = threading.Thread(target=self._drain, args=(work,), name=f"consumer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        topics = self._ctx.topics
        for topic_filter in (topics.all_station_events(), topics.all_unit_events()):
            self._bus.subscribe(topic_filter, self.on_message, shared_group=self._shared_group)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop retrying; an in-flight message stays unacknowledged and will be redelivered."""
        self._stopping.set()
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def on_message(self, message: InboundMessage) -> None:
        """Handle one message; never raises."""
        try:
            envelope = decode(message.payload)
        except DecodeError as exc:
            self._deadletter(message, "invalid", str(exc))
            return
        handler = self._handlers.get(type(envelope.message))
        if handler is None:
            message.ack()  # an event for others (e.g. unit.assigned): not ours to act on
            return
        problem = topic_problem(self._ctx.topics, message.topic, envelope)
        if problem:
            self._deadletter(message, "forged", problem)
            return
        if self._queues:
            key = (envelope.subject or message.topic).encode("utf-8")
            self._queues[zlib.crc32(key) % len(self._queues)].put((handler, envelope, message))
        else:
            self._run(handler, envelope, message)

    def _drain(self, work: queue.Queue[_Work | None]) -> None:
        while (item := work.get()) is not None:
            batch = [item]
            while len(batch) < self._batch_size:
                try:
                    more = work.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    work.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Work]) -> None:
        if len(batch) > 1 and not self._stopping.is_set():
            started = monotonic()
            try:
                self._commit_batch(batch)
            except Exception as exc:  # redone one by one below, where each failure is handled
                log.info("batch of %d rolled back (%s); one by one now", len(batch), type(exc).__name__)
            else:
                seconds = monotonic() - started
                for _, envelope, message in batch:
                    message.ack()
                    metrics.current().stage_completed(_stage(envelope), seconds)
                self._ctx.notify_outbox()
                return
        for item in batch:
            self._run(*item)

    def _commit_batch(self, batch: list[_Work]) -> None:
        """Run every handler of `batch` in one transaction and commit it (raises if any failed)."""
        with self._ctx.uow_factory() as outer:
            ctx = dataclasses.replace(self._ctx, uow_factory=outer.member, notify_outbox=_nothing)
            # Two round trips for the whole batch instead of two per message (handlers then hit caches).
            outer.processed.preload([envelope.id for _, envelope, _ in batch])
            outer.units.lock_many([e.subject for _, e, _ in batch if e.subject])
            for kind, prepare in self._preparers.items():
                if same_kind := [e for _, e, _ in batch if type(e.message) is kind]:
                    prepare(outer, ctx, same_kind)
            for handler, envelope, _ in batch:
                handler(ctx, envelope)
            outer.commit()

    def _run(self, handler: Handler, envelope: Envelope, message: InboundMessage) -> None:
        attempt = conflicts = 0
        stage, started = _stage(envelope), monotonic()
        while not self._stopping.is_set():
            try:
                handler(self._ctx, envelope)
            except Rejected as exc:
                self._deadletter(message, "rejected", str(exc))
            except Exception as exc:  # one bad message must never stop the worker
                if self._is_conflict(exc) and conflicts < CONFLICT_RETRIES:
                    # Another worker wrote the same row first (e.g. two copies of `edgeline up` keying one
                    # new unit from two scans): running the handler again sees that row and is a no-op.
                    conflicts += 1
                    log.info("%s %s: write conflict; retrying", envelope.type, envelope.subject)
                    self._stopping.wait(0.1 * conflicts)
                    continue
                if self._is_transient(exc):
                    delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                    log.warning(
                        "%s %s: transient failure (%s); retrying in %.1f s",
                        envelope.type,
                        envelope.subject,
                        type(exc).__name__,
                        delay,
                    )
                    attempt += 1
                    metrics.current().retry(stage)
                    self._stopping.wait(delay)
                    continue
                log.exception("%s %s: handler failed", envelope.type, envelope.subject)
                self._deadletter(message, "handler-error", f"{type(exc).__name__}: {exc}")
            else:
                message.ack()
                metrics.current().stage_completed(stage, monotonic() - started)
            return

    def _deadletter(self, message: InboundMessage, reason: str, detail: str) -> None:
        log.warning("dead-letter (%s) from %s: %s", reason, message.topic, detail)
        metrics.current().dead_letter(reason)
        body = {
            "reason": reason,
            "detail": detail[:1024],
            "topic": message.topic,
            "payload_base64": base64.b64encode(message.payload[:MAX_DEADLETTER_PAYLOAD]).decode("ascii"),
            "payload_truncated": len(message.payload) > MAX_DEADLETTER_PAYLOAD,
        }
        try:
            self._bus.publish(self._ctx.topics.deadletter(reason), json.dumps(body).encode("utf-8"))
        except BusError as exc:
            log.error("could not publish dead-letter: %s", exc)
        message.ack()


def _stage(envelope: Envelope) -> str:
    """The stage a message completes, for metrics: `scanned` for `io.edgeline.unit.scanned.v1`."""
    return envelope.type.split(".")[-2] if "." in envelope.type else envelope.type


def _nothing() -> None:
    """The outbox is woken once per batch, after its commit."""


def topic_problem(topics: Topics, topic: str, envelope: Envelope) -> str | None:
    """Why `envelope` may not arrive on `topic` (wrong type name, or a station speaking for another)."""
    message = envelope.message
    parts = topic.split("/")
    if parts[-1] != message.NAME:
        return f"topic {topic} carries a {envelope.type} event"
    if type(message) in STATION_MESSAGES:
        n = len(topics.base.split("/"))
        shape_ok = len(parts) == n + 6 and parts[:n] == topics.base.split("/")
        if not shape_ok or (parts[n], parts[n + 2], parts[n + 4]) != ("lines", "stations", "events"):
            return f"{envelope.type} must come from a station topic, not {topic}"
        station = getattr(message, "station", None)
        if parts[n + 3] != station:
            return f"station {parts[n + 3]} published an event in the name of station {station}"
        # Broker ACLs confine a station by line too, and station names repeat across lines.
        line = getattr(message, "line", None)
        if line is not None and parts[n + 1] != line:
            return f"station {parts[n + 3]} of line {parts[n + 1]} published an event for line {line}"
    return None
