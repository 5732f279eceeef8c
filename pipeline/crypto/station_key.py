"""A station's X25519 key pair: generation, the private key file, and the public key's text form.

Responsible for: creating a station key (`edgeline station init`), saving it atomically with mode 0600,
refusing to load a key file that others can read, and the public key's text form that the station
prints and the pipeline's configuration holds.
Not responsible for: encrypting or decrypting configs (`pipeline.crypto.envelope`), or registering the
public key with the pipeline.

Private key file: PKCS#8 PEM, unencrypted (protected by file permissions, like an SSH host key), so
``openssl pkey -in station.key -pubout`` can inspect it.
Public key text form: the 32 raw bytes in base64url without padding — 43 characters of
``[A-Za-z0-9_-]``, safe in TOML, environment variables, URLs and MQTT topics. `public_key_from_text`
also accepts trailing "=" padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_BYTES = 32
MAX_KEY_FILE_BYTES = 4096
_PUBLIC_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=?")


class StationKeyError(ValueError):
    """A station key or key file that cannot be used; says what to do. Never contains key material."""


def station_key_id(public: bytes) -> str:
    """Return a short non-secret id of a station public key: 16 hex of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_key_to_text(public: bytes) -> str:
    """Return the text form of a 32-byte public key: unpadded base64url (43 characters)."""
    if len(public) != PUBLIC_KEY_BYTES:
        raise StationKeyError(f"station public key is {len(public)} bytes; X25519 keys are 32")
    return base64.urlsafe_b64encode(public).rstrip(b"=").decode("ascii")


def public_key_from_text(text: str) -> bytes:
    """Parse the text form of a station public key back to its 32 bytes."""
    cleaned = text.strip()
    if not _PUBLIC_TEXT.fullmatch(cleaned):
        raise StationKeyError(
            "station public key must be 43 base64url characters (as printed by `edgeline station init`)"
        )
    try:
        raw = base64.urlsafe_b64decode(cleaned.rstrip("=") + "=")
    except (binascii.Error, ValueError):
        raise StationKeyError("station public key is not valid base64url") from None
    if public_key_to_text(raw) != cleaned.rstrip("="):
        raise StationKeyError("station public key is not canonical base64url: was it retyped by hand?")
    return raw


class StationKeyPair:
    """A station's X25519 private key and its public half; repr shows only the key id."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> StationKeyPair:
        """Create a new random key pair."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> StationKeyPair:
        """Build a key pair from the 32 raw private key bytes."""
        if len(raw) != PRIVATE_KEY_BYTES:
            raise StationKeyError(f"station private key is {len(raw)} bytes; X25519 keys are 32")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def public_bytes(self) -> bytes:
        """Return the 32-byte public key."""
        return self._public

    def private_bytes(self) -> bytes:
        """Return the 32 raw private key bytes. Only for saving; never log them."""
        return self._private.private_bytes_raw()

    def public_text(self) -> str:
        """Return the public key's text form (see module docstring) for `edgeline station init`."""
        return public_key_to_text(self._public)

    @property
    def key_id(self) -> str:
        """A short non-secret id of this key pair (16 hex of SHA-256 of the public key)."""
        return station_key_id(self._public)

    def exchange(self, peer_public: bytes) -> bytes:
        """Return the X25519 shared secret with `peer_public` (raises ValueError on a bad peer key)."""
        return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))

    def __repr__(self) -> str:
        return f"StationKeyPair(key id {self.key_id})"

    __str__ = __repr__

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the private key as PKCS#8 PEM with mode 0600, atomically (temp file + rename)."""
        target = Path(path)
        if target.exists() and not overwrite:
            raise StationKeyError(
                f"station key file {target} already exists; configs in flight were sealed to it. "
                "Remove it first if you really mean to replace this station's key"
            )
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            _write_private_file(target, pem)
        except OSError as exc:
            raise StationKeyError(f"cannot write station key file {target}: {exc.strerror or exc}") from None
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StationKeyPair:
        """Read a key file written by `save`, refusing one that group or others can read."""
        source = Path(path)
        data = _read_private_file(source)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise StationKeyError(f"station key file {source} is not an unencrypted PKCS#8 PEM key") from None
        if not isinstance(key, X25519PrivateKey):
            raise StationKeyError(
                f"station key file {source} holds a {type(key).__name__}, not an X25519 key"
            )
        return cls(key)


def _write_private_file(target: Path, data: bytes) -> None:
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.name == "posix":
            os.chmod(temp, 0o600)  # the umask may have narrowed, never widened, but be explicit
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _read_private_file(source: Path) -> bytes:
    try:
        info = source.stat()
    except FileNotFoundError:
        raise StationKeyError(f"station key file {source} not found: run `edgeline station init`") from None
    if not stat.S_ISREG(info.st_mode):
        raise StationKeyError(f"station key file {source} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise StationKeyError(
            f"station key file {source} is readable or writable by group/others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {source}`"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise StationKeyError(f"station key file {source} is {info.st_size} bytes: not a station key")
    return source.read_bytes()
