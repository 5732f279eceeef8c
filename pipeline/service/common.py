"""Small pieces every handler shares: audit records, failing a unit, finding a unit's key.

Not responsible for: deciding what a handler does (see the stage modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import metrics
from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import UnitFailed
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import EnrollmentMode, Failure, Unit
from pipeline.keystore.ports import KeyStoreError
from pipeline.service.actors import qualified
from pipeline.service.context import Context
from pipeline.service.unit_of_work import GroupRecord, UnitOfWork

MAX_REASON = 900


class Rejected(ValueError):
    """A message the pipeline will not act on (it goes to the dead-letter topic with this reason)."""


class KeyUnavailable(RuntimeError):
    """The key a unit needs is not in the database (group not initialised, key row missing)."""


def device_key_context(registration_id: str) -> str:
    """Associated data binding a sealed device key to its unit."""
    return f"device-key:{registration_id}"


def audit(uow: UnitOfWork, ctx: Context, unit: Unit | None, kind: str, actor: str, **detail: Any) -> None:
    """Append an audit record about `unit` (never pass key material in `detail`).

    `actor` is a worker role (recorded with the instance that ran it), or an explicit identity such as
    `station_actor(...)`; what a station reported also records which worker instance recorded it.
    """
    if actor.startswith("station:"):
        detail = {**detail, "recorded_by": ctx.instance}
    uow.audit.append(
        at=ctx.clock(),
        kind=kind,
        actor=qualified(actor, ctx.instance),
        registration_id=unit.registration_id if unit else None,
        detail=detail,
    )


def record_transition(uow: UnitOfWork, ctx: Context, unit: Unit, actor: str, **detail: Any) -> None:
    """Save the unit and audit its new state."""
    uow.units.save(unit)
    audit(uow, ctx, unit, f"unit.{unit.state.value}", actor, **detail)


def fail_unit(
    uow: UnitOfWork, ctx: Context, unit: Unit, *, stage: str, reason: str, retryable: bool, actor: str
) -> None:
    """Mark the unit failed at `stage`, audit it and announce `unit.failed`."""
    reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"  # events cap text fields
    unit.fail(Failure(stage=stage, reason=reason, retryable=retryable), ctx.clock())
    metrics.current().stage_failed(stage, retryable=retryable)
    record_transition(uow, ctx, unit, actor, stage=stage, reason=reason, retryable=retryable)
    ctx.emit_unit_event(
        uow,
        UnitFailed(
            registration_id=unit.registration_id,
            stage=stage,
            reason=reason,
            retryable=retryable,
            attempt=unit.attempts,
        ),
    )


@dataclass(frozen=True, slots=True)
class KeyOrigin:
    """Where a unit's device key came from: the key ledger entry recorded with its config."""

    store: str  # "database" or "pkcs11" (group keys); "database" for sealed individual keys
    source: str  # "group:<group id>" or "individual"
    fingerprint: str  # of the group key it was derived from, or of the individual key itself


def group_record(uow: UnitOfWork, group_id: str) -> GroupRecord:
    """The group edgeline manages, or KeyUnavailable saying how to create it."""
    record = uow.groups.get(group_id)
    if record is None:
        raise KeyUnavailable(
            f"enrollment group {group_id!r} has no key in the database: run `edgeline up` "
            "once to create it, or `edgeline group create`"
        )
    return record


def device_key_with_origin(uow: UnitOfWork, ctx: Context, unit: Unit) -> tuple[SecretKey, KeyOrigin]:
    """The key the device signs with, and where it came from (for the key ledger)."""
    if unit.mode is EnrollmentMode.GROUP:
        group_id = unit.group_id or ctx.settings.group_id()
        record = group_record(uow, group_id)
        store = ctx.group_key_store()
        try:
            key = store.derive(record.sealed_primary_key, group_id, "primary", unit.registration_id)
            fingerprint = store.fingerprint(record.sealed_primary_key, group_id, "primary")
        except KeyStoreError as exc:
            raise KeyUnavailable(f"unit {unit.registration_id}: {exc}") from None
        return key, KeyOrigin(store.name, f"group:{group_id}", fingerprint)
    sealed = uow.keys.get(unit.registration_id)
    if sealed is None:
        raise KeyUnavailable(f"unit {unit.registration_id}: no individual key stored; rescan the unit")
    key = ctx.sealer.unseal_key(sealed, context=device_key_context(unit.registration_id))
    return key, KeyOrigin("database", "individual", key.fingerprint)


def device_key(uow: UnitOfWork, ctx: Context, unit: Unit) -> SecretKey:
    """The key the device signs with: derived from its group, or its own individual enrollment key."""
    return device_key_with_origin(uow, ctx, unit)[0]


def finish(uow: UnitOfWork, ctx: Context, envelope: Envelope, actor: str) -> None:
    """Record the message as processed by `actor`, commit, and wake the outbox relay."""
    uow.processed.record(envelope.id, actor, ctx.clock())
    uow.commit()
    ctx.notify_outbox()
