"""Seal keys at rest: AES-256-GCM under the master key, bound to the row they belong to.

Responsible for: turning a secret (a group key, an individual enrollment key) into an opaque blob that
can be stored in the database, and back, failing loudly when the blob was sealed under another master
key, moved to another row, or altered.
Not responsible for: where the master key comes from (`pipeline.config`), where blobs are stored
(`pipeline.db`), or sending keys to stations (`pipeline.crypto.envelope`).

Blob format, version 1 (all lengths in bytes):

    version (1) = 0x01 | key id (4) | nonce (12, random) | ciphertext + GCM tag (16)

The key id is the first 4 bytes of SHA-256(master key), the same value `SecretKey.fingerprint` shows,
so "sealed with a different master key" names both fingerprints an operator can compare. The AEAD
associated data is version + key id + the UTF-8 `context` (e.g. ``device-key:sn-007-mac-...``): a blob
copied to another row, or with an edited header, does not open. Random 96-bit nonces are safe for far
more than the 2^32 seals NIST allows per key; a line seals a few thousand keys a day.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.domain.keys import KeyFormatError, SecretKey

MASTER_KEY_BYTES = 32
BLOB_VERSION = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
MAX_PLAINTEXT_BYTES = 64 * 1024
MAX_BLOB_BYTES = HEADER_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES
MAX_CONTEXT_CHARS = 512


class SealError(ValueError):
    """A secret that cannot be sealed or unsealed. The message never contains key material."""


def key_id_of(master_key: SecretKey) -> bytes:
    """Return the 4-byte id stored in blobs: the start of SHA-256 of the master key."""
    return hashlib.sha256(master_key.reveal()).digest()[:KEY_ID_BYTES]


def check_context(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise SealError("seal context is empty: pass what the secret belongs to, e.g. 'device-key:<id>'")
    if len(context) > MAX_CONTEXT_CHARS:
        raise SealError(f"seal context is {len(context)} characters; at most {MAX_CONTEXT_CHARS} allowed")
    if not context.isprintable():
        raise SealError("seal context contains control or non-printable characters")
    return context.encode("utf-8")


class KeySealer(Protocol):
    """What stores sealed secrets need: `Sealer` in process, `Pkcs11Sealer` with the key in an HSM."""

    @property
    def key_id(self) -> str: ...

    def seal(self, plaintext: bytes, *, context: str) -> bytes: ...

    def unseal(self, blob: bytes, *, context: str) -> bytes: ...

    def seal_key(self, key: SecretKey, *, context: str) -> bytes: ...

    def unseal_key(self, blob: bytes, *, context: str) -> SecretKey: ...

    def sealed_with_current_key(self, blob: bytes) -> bool: ...


def _aead_for(master_key: SecretKey) -> AESGCM:
    if not isinstance(master_key, SecretKey):
        raise SealError("master key must be a SecretKey")
    size = len(master_key.reveal())
    if size != MASTER_KEY_BYTES:
        raise SealError(
            f"master key is {size} bytes; AES-256-GCM needs exactly {MASTER_KEY_BYTES} "
            "(generate one with: openssl rand -base64 32)"
        )
    return AESGCM(master_key.reveal())


class Sealer:
    """Seals and unseals secrets under one 32-byte master key."""

    __slots__ = ("_aead", "_key_id")

    def __init__(self, master_key: SecretKey) -> None:
        self._aead = _aead_for(master_key)
        self._key_id = key_id_of(master_key)

    @property
    def key_id(self) -> str:
        """The master key's id as 8 hex characters (equal to its `SecretKey.fingerprint`)."""
        return self._key_id.hex()

    def __repr__(self) -> str:
        return f"Sealer(master key id {self.key_id})"

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypt `plaintext` for storage in the row named by `context`."""
        aad_context = check_context(context)
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise SealError(f"secret is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} can be sealed")
        header = bytes([BLOB_VERSION]) + self._key_id
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, bytes(plaintext), header + aad_context)
        return header + nonce + ciphertext

    def unseal(self, blob: bytes, *, context: str) -> bytes:
        """Decrypt a blob made by `seal` with the same master key and the same `context`."""
        aad_context = check_context(context)
        self._check_header(blob, context)
        header = bytes(blob[: 1 + KEY_ID_BYTES])
        nonce = blob[1 + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[HEADER_BYTES:], header + aad_context)
        except InvalidTag:
            raise SealError(
                f"sealed secret for {context!r} failed authentication: it was sealed for another "
                "row (context) or the stored blob was altered"
            ) from None

    def _check_header(self, blob: bytes, context: str) -> None:
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise SealError(f"sealed secret for {context!r} is not bytes")
        size = len(blob)
        if size < HEADER_BYTES + TAG_BYTES or size > MAX_BLOB_BYTES:
            raise SealError(f"sealed secret for {context!r} is {size} bytes: truncated or not a sealed blob")
        if blob[0] != BLOB_VERSION:
            raise SealError(f"sealed secret for {context!r} has unsupported format version {blob[0]}")
        blob_key_id = bytes(blob[1 : 1 + KEY_ID_BYTES])
        if blob_key_id != self._key_id:
            raise SealError(
                f"sealed secret for {context!r} was sealed with a different master key "
                f"(blob key id {blob_key_id.hex()}, current master key id {self.key_id}): set master_key or "
                "master_key_file (EDGELINE_MASTER_KEY / _FILE) to the key it was sealed with"
            )

    def sealed_with_current_key(self, blob: bytes) -> bool:
        """Whether `blob` is already sealed under the current master key (rotation skips it)."""
        return bytes(blob[1 : 1 + KEY_ID_BYTES]) == self._key_id

    def seal_key(self, key: SecretKey, *, context: str) -> bytes:
        """Seal a `SecretKey` (its raw bytes) for the row named by `context`."""
        return self.seal(key.reveal(), context=context)

    def unseal_key(self, blob: bytes, *, context: str) -> SecretKey:
        """Unseal a blob made by `seal_key` back into a `SecretKey`."""
        raw = self.unseal(blob, context=context)
        try:
            return SecretKey(raw)
        except KeyFormatError as exc:
            raise SealError(f"sealed secret for {context!r} is not a key: {exc}") from None


class RingSealer:
    """Seals under `current`; unseals with whichever of `current` and `previous` sealed the blob.

    Used during a master-key rotation (`edgeline keys rotate-master`): workers that also know the old key
    keep reading blobs sealed under either key while they are re-sealed, so nothing stops.
    """

    def __init__(self, current: KeySealer, previous: Sequence[KeySealer]) -> None:
        self.current = current
        self._all = [current, *previous]

    @property
    def key_id(self) -> str:
        return self.current.key_id

    def __repr__(self) -> str:
        return f"RingSealer(current {self.current!r}, {len(self._all) - 1} previous)"

    def _for(self, blob: bytes) -> KeySealer:
        return next((s for s in self._all if s.sealed_with_current_key(blob)), self.current)

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        return self.current.seal(plaintext, context=context)

    def unseal(self, blob: bytes, *, context: str) -> bytes:
        return self._for(blob).unseal(blob, context=context)

    def seal_key(self, key: SecretKey, *, context: str) -> bytes:
        return self.current.seal_key(key, context=context)

    def unseal_key(self, blob: bytes, *, context: str) -> SecretKey:
        return self._for(blob).unseal_key(blob, context=context)

    def sealed_with_current_key(self, blob: bytes) -> bool:
        return self.current.sealed_with_current_key(blob)
