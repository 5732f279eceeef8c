"""The group-key store port: keep a group key, derive device keys from it, never hand it out needlessly.

A store returns an opaque *handle* for each key it keeps; the database stores the handle in the group's
row (for the sealed store the handle is the sealed blob itself, so existing rows stay valid).
"""

from __future__ import annotations

import abc

from pipeline.domain.keys import SecretKey


class KeyStoreError(RuntimeError):
    """The key store cannot do what was asked; the message names the setting to fix. Never key material."""


class GroupKeyStore(abc.ABC):
    """Where enrollment-group keys live."""

    name: str  # "database" or "pkcs11": recorded in each unit's key ledger entry

    @abc.abstractmethod
    def store(self, group_id: str, slot: str, key: SecretKey) -> bytes:
        """Keep `key` as the group's `slot` ("primary"/"secondary") key; return its handle."""

    @abc.abstractmethod
    def derive(self, handle: bytes, group_id: str, slot: str, registration_id: str) -> SecretKey:
        """The device key HMAC-SHA256(group key, registration ID), computed where the key lives."""

    @abc.abstractmethod
    def fingerprint(self, handle: bytes, group_id: str, slot: str) -> str:
        """The key's fingerprint (`SecretKey.fingerprint`) without revealing it."""

    def matches(self, handle: bytes, group_id: str, slot: str, candidate: SecretKey) -> bool:
        """Whether the kept key equals `candidate` (e.g. the key DPS holds), compared where it lives."""
        probe = "edgeline-key-check"
        return self.derive(handle, group_id, slot, probe) == _derive(candidate, probe)

    @abc.abstractmethod
    def reveal(self, handle: bytes, group_id: str, slot: str) -> SecretKey | None:
        """The key itself where the store allows it (sealed store); None for non-extractable keys."""

    def discard(self, handle: bytes) -> None:  # noqa: B027 (optional: the sealed store has nothing to free)
        """Forget a key that no enrollment uses any more (after a rotation dropped it)."""


def _derive(key: SecretKey, registration_id: str) -> SecretKey:
    from pipeline.domain.keys import derive_device_key

    return derive_device_key(key, registration_id)
