"""What handlers and jobs get injected: settings, ports, clock. Built by `pipeline.bootstrap`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.azure.ports import DpsClient, HubRegistry
from pipeline.bus.cloudevents import encode
from pipeline.bus.topics import Topics
from pipeline.config import Settings
from pipeline.crypto.sealing import Sealer
from pipeline.domain.events import Message
from pipeline.service.actors import worker_identity
from pipeline.service.unit_of_work import UnitOfWork

SOURCE = "edgeline/pipeline"


def utcnow() -> datetime:
    """The wall clock, timezone-aware (UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Context:
    """Dependencies of the service layer, injected so tests can pass their own."""

    settings: Settings
    uow_factory: Callable[[], UnitOfWork]
    sealer: Sealer
    dps: DpsClient
    hub: HubRegistry | None
    topics: Topics
    clock: Callable[[], datetime] = utcnow
    notify_outbox: Callable[[], None] = lambda: None
    instance: str = field(
        default_factory=worker_identity
    )  # who acts: worker:<host>:<pid> or cli:<user>@<host>

    def emit(self, uow: UnitOfWork, message: Message, topic: str) -> str:
        """Queue `message` in the outbox of `uow` (published after commit); return its event id."""
        event_id, payload = encode(message, source=SOURCE, time=self.clock())
        uow.outbox.add(event_id, topic, payload)
        return event_id

    def emit_unit_event(self, uow: UnitOfWork, message: Message) -> str:
        """Queue a pipeline event on `units/events/{name}`."""
        return self.emit(uow, message, self.topics.unit_event(message.NAME))
