"""Symmetric keys as values that cannot leak, and the DPS group-key derivation.

Responsible for: the `SecretKey` type (its repr/str never show key material), base64 parsing with
DPS's size rules, key generation, and the enrollment-group derivation of azure-notes §2.3.
Not responsible for: storing keys (`pipeline.crypto.sealing`) or sending them (`pipeline.crypto.envelope`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
GENERATED_KEY_BYTES = 64  # what DPS itself generates (azure-notes §1.5)


class KeyFormatError(ValueError):
    """A key that is not valid base64 of 16-64 bytes. The message never contains the key."""


class SecretKey:
    """Raw symmetric key bytes; shows only a short fingerprint, never the key itself."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
            raise KeyFormatError(f"key is {len(raw)} bytes; DPS accepts {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")
        self._raw = bytes(raw)

    @classmethod
    def from_base64(cls, text: str, *, what: str = "key") -> SecretKey:
        """Parse a base64 key (padding optional, as IoT Edge accepts), naming `what` in errors."""
        cleaned = text.strip()
        padded = cleaned + "=" * (-len(cleaned) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFormatError(f"{what} is not valid base64") from None
        try:
            return cls(raw)
        except KeyFormatError as exc:
            raise KeyFormatError(f"{what}: {exc}") from None

    @classmethod
    def generate(cls, size: int = GENERATED_KEY_BYTES) -> SecretKey:
        """Create a new random key from the OS CSPRNG."""
        return cls(secrets.token_bytes(size))

    def reveal(self) -> bytes:
        """Return the raw bytes. Call only where the key must leave: signing, sealing, rendering."""
        return self._raw

    def reveal_base64(self) -> str:
        """Return the key as standard base64, the form DPS and IoT Edge configs use."""
        return base64.b64encode(self._raw).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """A short non-secret tag (first 8 hex of SHA-256) to tell keys apart in logs."""
        return hashlib.sha256(self._raw).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"SecretKey(<{len(self._raw)} bytes, sha256:{self.fingerprint}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def derive_device_key(group_key: SecretKey, registration_id: str) -> SecretKey:
    """Derive a group member's device key: HMAC-SHA256(group key, UTF-8 registration ID)."""
    digest = hmac.new(group_key.reveal(), registration_id.encode("utf-8"), hashlib.sha256).digest()
    return SecretKey(digest)
