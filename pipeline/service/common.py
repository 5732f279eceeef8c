"""Small pieces every handler shares: audit records, failing a unit, finding a unit's key.

Not responsible for: deciding what a handler does (see the stage modules).
"""

from __future__ import annotations

from typing import Any

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import UnitFailed
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.domain.model import EnrollmentMode, Failure, Unit
from pipeline.service.actors import qualified
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

MAX_REASON = 900


class Rejected(ValueError):
    """A message the pipeline will not act on (it goes to the dead-letter topic with this reason)."""


class KeyUnavailable(RuntimeError):
    """The key a unit needs is not in the database (group not initialised, key row missing)."""


def device_key_context(registration_id: str) -> str:
    """Associated data binding a sealed device key to its unit."""
    return f"device-key:{registration_id}"


def group_key_context(group_id: str, which: str) -> str:
    """Associated data binding a sealed group key to its group and slot (primary/secondary)."""
    return f"group-key:{group_id}:{which}"


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


def group_key(uow: UnitOfWork, ctx: Context, group_id: str) -> SecretKey:
    """Unseal the primary key of an enrollment group edgeline manages."""
    record = uow.groups.get(group_id)
    if record is None:
        raise KeyUnavailable(
            f"enrollment group {group_id!r} has no key in the database: run `edgeline up` "
            "once to create it, or `edgeline group create`"
        )
    return ctx.sealer.unseal_key(record.sealed_primary_key, context=group_key_context(group_id, "primary"))


def device_key(uow: UnitOfWork, ctx: Context, unit: Unit) -> SecretKey:
    """The key the device signs with: derived from its group, or its own individual enrollment key."""
    if unit.mode is EnrollmentMode.GROUP:
        return derive_device_key(
            group_key(uow, ctx, unit.group_id or ctx.settings.group_id()), unit.registration_id
        )
    sealed = uow.keys.get(unit.registration_id)
    if sealed is None:
        raise KeyUnavailable(f"unit {unit.registration_id}: no individual key stored; rescan the unit")
    return ctx.sealer.unseal_key(sealed, context=device_key_context(unit.registration_id))


def finish(uow: UnitOfWork, ctx: Context, envelope: Envelope, actor: str) -> None:
    """Record the message as processed by `actor`, commit, and wake the outbox relay."""
    uow.processed.record(envelope.id, actor, ctx.clock())
    uow.commit()
    ctx.notify_outbox()
