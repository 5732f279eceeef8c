"""The site's Ed25519 signing key: key pair files, signing and verifying signed audit exports.

Responsible for: `edgeline audit keygen` (private key PKCS#8 PEM, mode 0600; public key PEM), loading
either file with a one-line error, and sign/verify of a byte string.
Not responsible for: what is signed (pipeline.exports.signed_export).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_KEY_FILE_BYTES = 4096


class SigningKeyError(ValueError):
    """A key file that cannot be used; says which file and what to do. Never contains key material."""


class SiteSigner:
    """Signs with the site's private key; `repr` never shows it."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    def __repr__(self) -> str:
        return "SiteSigner(<private key hidden>)"

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        return self._private.sign(message)


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new key pair: the private key with mode 0600 (created so, never widened), the public PEM."""
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists: refusing to overwrite a key (move it away first)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_signer(path: Path) -> SiteSigner:
    """The signer from a private key file written by `generate_key_pair`."""
    data = _read(path, "private")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise SigningKeyError(f"{path} can be read by other users: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM private key: run `edgeline audit keygen`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key: run `edgeline audit keygen`")
    return SiteSigner(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key from a PEM file written by `generate_key_pair`."""
    data = _read(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM public key (the .pub file of `audit keygen`)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def verify_signature(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True if `signature` is the site's signature of `message`."""
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise SigningKeyError(f"{path} is too large for a {what} key file")
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {what} key file {path}: {exc.strerror}") from None
