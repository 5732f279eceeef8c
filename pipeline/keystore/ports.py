"""The group-key store port: keep a group key, derive device keys from it, never hand it out needlessly.

A store returns an opaque *handle* for each key it keeps; the database stores the handle in the group's
row (for the sealed store the handle is the sealed blob itself, so existing rows stay valid).
"""

from __future__ import annotations

import abc

from pipeline.domain.keys import SecretKey, derive_device_key


class KeyStoreError(RuntimeError):
    """The key store cannot do what was asked; the message names the setting to fix. Never key material."""


class GroupKeyStore(abc.ABC):
    """Where enrollment-group keys live.

    A new key is `generate`d in the store and may be read once (`reveal`) to register it with DPS; then
    `lock` makes it non-extractable where the store can (PKCS#11). Derivation, comparison and
    fingerprints work without revealing it. `store` imports a key whose value the process already holds
    (a rotation takes the current keys from DPS itself).
    """

    name: str  # "database" or "pkcs11": recorded in each unit's key ledger entry

    @abc.abstractmethod
    def generate(self, group_id: str, slot: str) -> bytes:
        """Make a new random 64-byte key for the group's `slot`; return its handle (not yet locked)."""

    @abc.abstractmethod
    def store(self, group_id: str, slot: str, key: SecretKey) -> bytes:
        """Keep `key` as the group's `slot` ("primary"/"secondary") key, locked; return its handle."""

    @abc.abstractmethod
    def move(self, handle: bytes, group_id: str, from_slot: str, to_slot: str) -> bytes:
        """The handle of the same key in another slot (a rotation moves primary to secondary)."""

    @abc.abstractmethod
    def derive(self, handle: bytes, group_id: str, slot: str, registration_id: str) -> SecretKey:
        """The device key HMAC-SHA256(group key, registration ID), computed where the key lives."""

    @abc.abstractmethod
    def fingerprint(self, handle: bytes, group_id: str, slot: str) -> str:
        """The key's fingerprint (`SecretKey.fingerprint`) without revealing it."""

    def matches(self, handle: bytes, group_id: str, slot: str, candidate: SecretKey) -> bool:
        """Whether the kept key equals `candidate` (e.g. the key DPS holds), compared where it lives."""
        probe = "edgeline-key-check"
        return self.derive(handle, group_id, slot, probe) == derive_device_key(candidate, probe)

    @abc.abstractmethod
    def reveal(self, handle: bytes, group_id: str, slot: str) -> SecretKey | None:
        """The key itself where the store allows it; None once a PKCS#11 key is locked."""

    def lock(self, handle: bytes) -> None:  # noqa: B027 (the sealed store has nothing to lock)
        """Make the key non-extractable from now on (after DPS holds it)."""

    def discard(self, handle: bytes) -> None:  # noqa: B027 (the sealed store has nothing to free)
        """Forget a key that no enrollment uses any more (after a rotation dropped it)."""
