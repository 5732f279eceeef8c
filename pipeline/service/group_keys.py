"""The values of a group's two keys, for the moments DPS needs them (creating or rotating the group).

With the sealed store the values are unsealed; with a PKCS#11 store whose keys are locked they are read
from DPS itself (attestationmechanism) and accepted only if the token confirms they are the keys it
holds. Either way they stay in this process's memory for one DPS call and are never logged or stored.
"""

from __future__ import annotations

from pipeline.domain.keys import SecretKey
from pipeline.service.common import KeyUnavailable
from pipeline.service.context import Context
from pipeline.service.unit_of_work import GroupRecord


class GroupKeyMismatch(RuntimeError):
    """DPS holds other keys for the group than the key store: an operator must decide which is right."""


def group_key_values(ctx: Context, record: GroupRecord) -> tuple[SecretKey, SecretKey]:
    """(primary, secondary) of the group as values, from the key store or, if locked there, from DPS."""
    store, gid = ctx.group_key_store(), record.group_id
    primary = store.reveal(record.sealed_primary_key, gid, "primary")
    secondary = store.reveal(record.sealed_secondary_key, gid, "secondary")
    if primary is not None and secondary is not None:
        return primary, secondary
    held = ctx.dps.get_enrollment_group_keys(gid)
    if held is None:
        raise KeyUnavailable(
            f"enrollment group {gid!r}: its keys are locked in the {store.name} key store and DPS has no "
            "such group to confirm them; if DPS was reset, set a new enrollment_group_id and reflash units"
        )
    if not (
        store.matches(record.sealed_primary_key, gid, "primary", held[0])
        and store.matches(record.sealed_secondary_key, gid, "secondary", held[1])
    ):
        ours = (
            store.fingerprint(record.sealed_primary_key, gid, "primary"),
            store.fingerprint(record.sealed_secondary_key, gid, "secondary"),
        )
        raise GroupKeyMismatch(
            f"enrollment group {gid!r}: DPS holds keys {held[0].fingerprint}/{held[1].fingerprint}, the "
            f"{store.name} key store {ours[0]}/{ours[1]}; an operator must decide which is right"
        )
    return held
