"""What handlers and jobs get injected: settings, ports, clock. Built by `pipeline.bootstrap`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.azure.ports import DpsClient, HubRegistry
from pipeline.bus.cloudevents import encode
from pipeline.bus.topics import Topics
from pipeline.config import Settings
from pipeline.crypto.sealing import KeySealer
from pipeline.domain.events import Message
from pipeline.keystore.ports import GroupKeyStore
from pipeline.keystore.sealed import SealedGroupKeyStore
from pipeline.service.actors import worker_identity
from pipeline.service.unit_of_work import UnitOfWork

SOURCE = "edgeline/pipeline"


def utcnow() -> datetime:
    """The wall clock, timezone-aware (UTC)."""
    return datetime.now(UTC)


def no_approval(registration_id: str) -> None:
    """`request_approval` where no MES approval is configured: nothing to ask."""


@dataclass(frozen=True, slots=True)
class Context:
    """Dependencies of the service layer, injected so tests can pass their own."""

    settings: Settings
    uow_factory: Callable[[], UnitOfWork]
    sealer: KeySealer
    dps: DpsClient
    hub: HubRegistry | None
    topics: Topics
    clock: Callable[[], datetime] = utcnow
    notify_outbox: Callable[[], None] = lambda: None
    request_approval: Callable[[str], None] = no_approval  # hand a scanned unit to the MES approval runner
    group_keys: GroupKeyStore | None = None  # None: group keys sealed in the database under `sealer`

    def group_key_store(self) -> GroupKeyStore:
        """Where enrollment-group keys live (the database, sealed, unless a key store was configured)."""
        return self.group_keys or SealedGroupKeyStore(self.sealer)

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
