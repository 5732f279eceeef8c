"""The default group-key store: keys sealed under the master key, the sealed blob kept in the database."""

from __future__ import annotations

from pipeline.crypto.sealing import KeySealer
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.keystore.ports import GroupKeyStore


def group_key_context(group_id: str, slot: str) -> str:
    """Associated data binding a sealed group key to its group and slot (primary/secondary)."""
    return f"group-key:{group_id}:{slot}"


class SealedGroupKeyStore(GroupKeyStore):
    """Handles are AES-GCM blobs sealed for the group's row and slot."""

    name = "database"

    def __init__(self, sealer: KeySealer) -> None:
        self._sealer = sealer

    def generate(self, group_id: str, slot: str) -> bytes:
        return self.store(group_id, slot, SecretKey.generate())

    def store(self, group_id: str, slot: str, key: SecretKey) -> bytes:
        return self._sealer.seal_key(key, context=group_key_context(group_id, slot))

    def move(self, handle: bytes, group_id: str, from_slot: str, to_slot: str) -> bytes:
        return self.store(group_id, to_slot, self.reveal(handle, group_id, from_slot))

    def reveal(self, handle: bytes, group_id: str, slot: str) -> SecretKey:
        return self._sealer.unseal_key(handle, context=group_key_context(group_id, slot))

    def derive(self, handle: bytes, group_id: str, slot: str, registration_id: str) -> SecretKey:
        return derive_device_key(self.reveal(handle, group_id, slot), registration_id)

    def fingerprint(self, handle: bytes, group_id: str, slot: str) -> str:
        return self.reveal(handle, group_id, slot).fingerprint

    def matches(self, handle: bytes, group_id: str, slot: str, candidate: SecretKey) -> bool:
        return self.reveal(handle, group_id, slot) == candidate
