"""Ports of persistence: repositories and the unit of work the handlers run in.

Handlers depend on these abstract classes only; `pipeline.db.uow.SqlUnitOfWork` implements them with
SQLAlchemy, tests may use `tests/fakes.py`. One UnitOfWork = one database transaction: the state
change, the processed-message record, the outbox rows and the audit records commit together or not at all.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from pipeline.domain.approval import ApprovalDecision
from pipeline.domain.model import Unit, UnitState


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """An enrollment group edgeline manages. Its keys are handles of the key store: sealed blobs (the
    database store), or names of non-extractable objects in a PKCS#11 token."""

    group_id: str
    product: str
    sealed_primary_key: bytes
    sealed_secondary_key: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StationRecord:
    """A registered station and the X25519 public key configs are encrypted to."""

    name: str
    line: str
    public_key: bytes  # 32 raw bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message committed with a state change, waiting to be published."""

    id: int
    event_id: str
    topic: str
    payload: bytes


class UnitRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, registration_id: str, *, for_update: bool = False) -> Unit | None:
        """Load a unit; `for_update` locks its row (PostgreSQL) until commit."""

    @abc.abstractmethod
    def find_by_mac(self, mac: str) -> Unit | None: ...

    @abc.abstractmethod
    def find_identity_conflict(self, serial: str, mac: str) -> Unit | None:
        """Hold this serial and MAC until the transaction ends (identity checks must not race), then
        return the most recently updated unit with this MAC, else with this serial (units added in this
        transaction included), or None."""

    @abc.abstractmethod
    def find_by_serial(self, serial: str) -> Unit | None: ...

    @abc.abstractmethod
    def add(self, unit: Unit) -> None: ...

    @abc.abstractmethod
    def save(self, unit: Unit) -> None:
        """Persist every field of an already-added unit."""

    @abc.abstractmethod
    def stuck(
        self, states: tuple[UnitState, ...], updated_before: datetime, limit: int, *, claim: bool = False
    ) -> list[Unit]:
        """Units in one of `states` not updated since `updated_before`, oldest first.

        `claim` locks them until the transaction ends, skipping rows another worker holds: two workers'
        reconcilers then never re-drive or retry the same unit twice.
        """

    @abc.abstractmethod
    def due_for_check(
        self,
        now: datetime,
        limit: int,
        *,
        settled_before: datetime | None = None,
        window_start: datetime | None = None,
    ) -> list[Unit]:
        """Units the confirmer should ask DPS about now, earliest due first.

        Flashed units whose `next_check_at` is at or before `now`; with `settled_before` and
        `window_start` also config_issued, failed and quarantined units that were issued a config and
        entered that state after `window_start`: due at `next_check_at`, or, never checked, once their
        last update is before `settled_before`.
        """

    @abc.abstractmethod
    def count_by_state(self) -> dict[str, int]: ...

    def lock_many(self, registration_ids: list[str]) -> None:
        """Lock (and load) these units in one round trip; later `get`s in this transaction are free.

        An optimisation hint for batches: implementations may do nothing.
        """
        return None

    def lock_identities(self, identities: list[tuple[str, str]]) -> None:
        """Do `find_identity_conflict`'s locking and reading for these (serial, MAC) pairs at once, so
        its later calls for them in this transaction need no round trip.

        An optimisation hint for batches: implementations may do nothing.
        """
        return None


class KeyRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, registration_id: str) -> bytes | None:
        """The sealed individual device key, if one was generated."""

    @abc.abstractmethod
    def put(self, registration_id: str, sealed_key: bytes) -> None: ...

    @abc.abstractmethod
    def page(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """(registration ID, sealed key) ordered by registration ID, those after `after` (for re-sealing)."""


class GroupRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, group_id: str) -> GroupRecord | None: ...

    @abc.abstractmethod
    def put(self, record: GroupRecord) -> None:
        """Insert or replace (key rotation)."""

    @abc.abstractmethod
    def add_if_absent(self, record: GroupRecord) -> bool:
        """Insert unless the group exists (another worker may be creating it right now); True if added."""

    @abc.abstractmethod
    def list(self) -> list[GroupRecord]: ...


class StationRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, name: str) -> StationRecord | None: ...

    @abc.abstractmethod
    def put(self, record: StationRecord) -> None: ...

    @abc.abstractmethod
    def list(self) -> list[StationRecord]: ...


class ApprovalRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, registration_id: str) -> ApprovalDecision | None:
        """The MES's latest decision on the unit, if approval is in use."""

    @abc.abstractmethod
    def put(self, registration_id: str, decision: ApprovalDecision, at: datetime) -> None:
        """Insert or replace the unit's decision (a rework asks again)."""


class Outbox(abc.ABC):
    @abc.abstractmethod
    def add(self, event_id: str, topic: str, payload: bytes) -> None: ...

    @abc.abstractmethod
    def pending(self, limit: int, *, min_id: int = 0) -> list[OutboxItem]:
        """Unpublished items with `id >= min_id`, oldest first."""

    @abc.abstractmethod
    def claim_pending(self, limit: int, *, min_id: int = 0) -> list[OutboxItem]:
        """Claim unpublished items with `id >= min_id` for the relay; first call of its unit of work.

        Where the database can lock single rows, the claim holds until the unit of work ends, so
        relays in other processes skip these items (publish, `mark_published`, `commit`, all in the
        one unit of work). Where a held transaction would block every other writer, the claim ends
        at once and only one relay may run per database.
        """

    @abc.abstractmethod
    def mark_published(self, ids: list[int], at: datetime) -> None: ...

    @abc.abstractmethod
    def prune_published(self, published_before: datetime, limit: int) -> int:
        """Delete up to `limit` rows published before `published_before`; return how many.

        Unpublished rows are never deleted, whatever their age.
        """


class ProcessedMessages(abc.ABC):
    @abc.abstractmethod
    def seen(self, event_id: str, handler: str) -> bool: ...

    def preload(self, event_ids: list[str]) -> None:
        """Read every record of these events in one round trip (a hint; may do nothing)."""
        return None

    @abc.abstractmethod
    def record(self, event_id: str, handler: str, at: datetime) -> None: ...

    @abc.abstractmethod
    def prune(self, processed_before: datetime, limit: int) -> int:
        """Forget up to `limit` records older than `processed_before`, oldest first; return how many."""


class AuditLog(abc.ABC):
    @abc.abstractmethod
    def append(
        self, *, at: datetime, kind: str, actor: str, registration_id: str | None, detail: dict[str, Any]
    ) -> None:
        """Append a hash-chained record. `detail` must never contain a key."""


class BatchAborted(RuntimeError):
    """A handler left a batch member without committing what it wrote: redo the batch one by one."""


class UnitOfWork(abc.ABC):
    """One transaction over all repositories. Use as `with uow: ...; uow.commit()`."""

    units: UnitRepository
    keys: KeyRepository
    groups: GroupRepository
    stations: StationRepository
    outbox: Outbox
    processed: ProcessedMessages
    audit: AuditLog
    approvals: ApprovalRepository

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None:
        """Undo anything not committed (a no-op after commit)."""

    def member(self) -> UnitOfWork:
        """A unit of work whose `commit()` only joins this one's transaction (batched handling).

        Handlers run unchanged on members; this unit of work commits them all at once. A member left
        without commit after it wrote raises BatchAborted (its writes cannot be undone alone).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot batch units of work")
