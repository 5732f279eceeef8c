"""Enrollment-group administration: create, show and rotate the group key.

See architecture §3 and azure-notes §1.6, §2.3.

Rotation keeps every flashed device working. DPS accepts a device key derived from *either* of a group's
two keys, and edgeline derives device keys from the primary only. So a rotation moves the current
primary into the secondary slot and puts a new random primary in front: units configured afterwards get
keys derived from the new primary, units flashed before keep working through the secondary. The key
that was secondary until then is dropped: after the first rotation that is the initial secondary, which
no device ever derived from; after later rotations it is the primary of the rotation before, so devices
flashed before that rotation lose access. That case needs `force` and reports how many units the
database knows were configured with the dropped key (from the last `group.key_rotated` audit record).

Order of effects: DPS first (guarded by If-Match on the ETag read before checking DPS holds our keys),
then the database. In between, the configurer still derives from the old primary, which DPS now accepts
as secondary. If the database commit fails, DPS is put back to the old keys.
Not responsible for: argument parsing or printing (pipeline.cli.group_cmd), HTTP (the DpsClient
adapter) or SQL (the GroupKeyHistory and UnitOfWork adapters in pipeline.db).
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from datetime import datetime

from pipeline.azure.ports import AzureError, EnrollmentGroupSpec, EnrollmentInfo
from pipeline.domain.keys import SecretKey
from pipeline.service.actors import qualified
from pipeline.service.common import KeyUnavailable
from pipeline.service.context import Context
from pipeline.service.enrolling import ensure_group
from pipeline.service.group_keys import GroupKeyMismatch, group_key_values
from pipeline.service.unit_of_work import GroupRecord

ACTOR = "operator"
ROTATED = "group.key_rotated"
log = logging.getLogger(__name__)


class GroupError(RuntimeError):
    """A group command that cannot go ahead; the message says what to do."""


class RotationNeedsForce(GroupError):
    """The rotation would drop a key that devices may have been flashed with."""

    def __init__(self, message: str, units_on_dropped_key: int) -> None:
        super().__init__(message)
        self.units_on_dropped_key = units_on_dropped_key


class GroupKeyHistory(abc.ABC):
    """Read-side questions about past rotations (answered from the audit log and the units table)."""

    @abc.abstractmethod
    def last_rotation(self, group_id: str) -> datetime | None:
        """When the group's key was last rotated, or None if never."""

    @abc.abstractmethod
    def units_configured_before(self, group_id: str, before: datetime) -> int:
        """Group-mode units (not revoked) of `group_id` whose latest config was issued before `before`."""


@dataclass(frozen=True, slots=True)
class GroupView:
    """What `group show` prints: never keys, only their fingerprints."""

    group_id: str
    product: str
    primary_fingerprint: str
    secondary_fingerprint: str
    last_rotated_at: datetime | None
    dps: EnrollmentInfo | None  # None: DPS has no such group

    @property
    def allocation_policy(self) -> str | None:
        value = self.dps.raw.get("allocationPolicy") if self.dps else None
        return value if isinstance(value, str) else None

    @property
    def iot_hubs(self) -> tuple[str, ...]:
        hubs = self.dps.raw.get("iotHubs") if self.dps else None
        return tuple(str(h) for h in hubs) if isinstance(hubs, list) else ()


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a rotation (fingerprints only)."""

    group_id: str
    primary_fingerprint: str
    secondary_fingerprint: str
    dropped_fingerprint: str
    units_on_dropped_key: int


@dataclass(frozen=True, slots=True)
class _Keys:
    record: GroupRecord
    primary: SecretKey
    secondary: SecretKey


def create_group(ctx: Context, history: GroupKeyHistory) -> GroupView:
    """Create the group's sealed keys if new and make DPS hold the group (idempotent)."""
    ensure_group(ctx)
    return show_group(ctx, history)


def show_group(ctx: Context, history: GroupKeyHistory) -> GroupView:
    """The group as the database and DPS know it."""
    group_id = ctx.settings.group_id()
    record = _record(ctx, group_id)
    store = ctx.group_key_store()
    return GroupView(
        group_id=group_id,
        product=record.product,
        primary_fingerprint=store.fingerprint(record.sealed_primary_key, group_id, "primary"),
        secondary_fingerprint=store.fingerprint(record.sealed_secondary_key, group_id, "secondary"),
        last_rotated_at=history.last_rotation(group_id),
        dps=ctx.dps.get_enrollment_group(group_id),
    )


def rotate_group_key(ctx: Context, history: GroupKeyHistory, *, force: bool = False) -> Rotation:
    """Make the current primary the secondary and a new random key the primary, in DPS then the DB."""
    group_id = ctx.settings.group_id()
    keys = _current_keys(ctx, group_id)
    at_risk = _check_dropped_key(group_id, history, force=force)
    info = ctx.dps.get_enrollment_group(group_id)
    if info is None or not info.etag:
        raise GroupError(f"enrollment group {group_id!r} is not in DPS: run `edgeline group create` first")
    ctx.dps.ensure_enrollment_group(_spec(ctx, group_id, keys.primary, keys.secondary))  # ours, or conflict
    store = ctx.group_key_store()
    new_handle = store.generate(group_id, "primary")
    new_primary = store.reveal(new_handle, group_id, "primary")
    assert new_primary is not None, "a key just generated is readable until it is locked"
    ctx.dps.replace_enrollment_group_keys(group_id, new_primary, keys.primary, etag=info.etag)
    rotation = Rotation(
        group_id, new_primary.fingerprint, keys.primary.fingerprint, keys.secondary.fingerprint, at_risk
    )
    secondary_handle = store.move(keys.record.sealed_primary_key, group_id, "primary", "secondary")
    try:
        _store_rotation(ctx, keys.record, new_handle, secondary_handle, rotation, forced=force)
    except Exception:
        _restore_dps(ctx, group_id, keys)
        store.discard(new_handle)
        raise
    store.lock(new_handle)
    store.discard(keys.record.sealed_secondary_key)  # the dropped key: no enrollment accepts it any more
    return rotation


def _check_dropped_key(group_id: str, history: GroupKeyHistory, *, force: bool) -> int:
    previous = history.last_rotation(group_id)
    if previous is None:
        return 0  # the secondary is the initial one, never used to derive a device key
    count = history.units_configured_before(group_id, previous)
    if not force:
        raise RotationNeedsForce(
            f"rotating drops the key that was primary until {previous.isoformat()}; {count} unit(s) "
            "configured before then will get 401 from DPS unless re-flashed; rerun with --force to accept",
            count,
        )
    log.warning("group %s: dropping the key of %d unit(s) configured before %s", group_id, count, previous)
    return count


def _store_rotation(
    ctx: Context,
    record: GroupRecord,
    primary_handle: bytes,
    secondary_handle: bytes,
    rotation: Rotation,
    *,
    forced: bool,
) -> None:
    gid = record.group_id
    with ctx.uow_factory() as uow:
        uow.groups.put(
            GroupRecord(
                group_id=gid,
                product=record.product,
                created_at=record.created_at,
                sealed_primary_key=primary_handle,
                sealed_secondary_key=secondary_handle,
            )
        )
        detail = {
            "group_id": gid,
            "primary": rotation.primary_fingerprint,
            "secondary": rotation.secondary_fingerprint,
            "dropped": rotation.dropped_fingerprint,
            "units_on_dropped_key": rotation.units_on_dropped_key,
            "forced": forced,
        }
        actor = qualified(ACTOR, ctx.instance)
        uow.audit.append(at=ctx.clock(), kind=ROTATED, actor=actor, registration_id=None, detail=detail)
        uow.commit()


def _restore_dps(ctx: Context, group_id: str, keys: _Keys) -> None:
    """Best effort: put the old keys back in DPS so it matches the database again."""
    try:
        info = ctx.dps.get_enrollment_group(group_id)
        if info is not None and info.etag:
            ctx.dps.replace_enrollment_group_keys(group_id, keys.primary, keys.secondary, etag=info.etag)
    except AzureError as exc:
        log.error(
            "group %s: DPS holds new keys the database does not have (devices flashed so far still work; "
            "edgeline reports a key conflict until DPS is set back to the database's keys): %s",
            group_id,
            exc,
        )


def _record(ctx: Context, group_id: str) -> GroupRecord:
    with ctx.uow_factory() as uow:
        record = uow.groups.get(group_id)
    if record is None:
        raise KeyUnavailable(
            f"enrollment group {group_id!r} has no key in the database: run `edgeline group create`"
        )
    return record


def _current_keys(ctx: Context, group_id: str) -> _Keys:
    record = _record(ctx, group_id)
    try:
        primary, secondary = group_key_values(ctx, record)
    except GroupKeyMismatch as exc:
        raise GroupError(str(exc)) from None
    return _Keys(record, primary, secondary)


def _spec(ctx: Context, group_id: str, primary: SecretKey, secondary: SecretKey) -> EnrollmentGroupSpec:
    return EnrollmentGroupSpec(
        group_id=group_id,
        primary_key=primary,
        secondary_key=secondary,
        iot_hubs=ctx.settings.iot_hubs,
        allocation_policy=ctx.settings.allocation_policy if ctx.settings.iot_hubs else None,
    )
