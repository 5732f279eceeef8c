"""Encrypt a rendered config so that only the target station can read it, for one unit (architecture §3).

Responsible for: the envelope format, sealing a config to a station's X25519 public key, and opening
it on the station with checks that it is addressed to this station and this unit.
Not responsible for: station key files (`pipeline.crypto.station_key`), rendering configs
(`pipeline.edgeconfig`), or carrying envelopes over the bus.

Envelope format, version 1 (ASCII, like a JWE compact serialisation)::

    base64url(header JSON) "." base64url(ciphertext + 16-byte tag)        (no "=" padding)

header JSON (UTF-8, sorted keys, no spaces): ``{"alg": "X25519-HKDF-SHA256-A256GCM", "epk": <base64url
ephemeral public key>, "kid": <station key id, 16 hex>, "nonce": <base64url 12 bytes>, "rid":
<registration id>, "stn": <station name>, "v": 1}``.

Crypto: shared = X25519(ephemeral, station); key = HKDF-SHA256(shared, salt = epk || station public,
info = "edgeline/config-envelope/v1" + length-prefixed station name + registration id); AES-256-GCM
with the header's base64url text as associated data. The station name and registration id are bound
twice — in the KDF from the caller's expectations and in the AAD from the header — so neither a
different station nor a config for another unit opens. They are also in the clear header only to
give the operator a precise error; they are not trusted until the tag verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.crypto.station_key import PUBLIC_KEY_BYTES, StationKeyPair, station_key_id

__all__ = [
    "EnvelopeError",
    "StationKeyPair",
    "open_from_pipeline",
    "seal_for_station",
]

ENVELOPE_VERSION = 1
ALGORITHM = "X25519-HKDF-SHA256-A256GCM"
MAX_ENVELOPE_CHARS = 64 * 1024
MAX_PLAINTEXT_BYTES = 44 * 1024  # base64 growth must keep the whole envelope under MAX_ENVELOPE_CHARS
MAX_HEADER_CHARS = 4096
MAX_NAME_CHARS = 128
NONCE_BYTES = 12
_INFO_PREFIX = b"edgeline/config-envelope/v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEADER_KEYS = frozenset({"alg", "epk", "kid", "nonce", "rid", "stn", "v"})


class EnvelopeError(ValueError):
    """An envelope that cannot be made or opened. The message never contains the config or a key."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise EnvelopeError(f"corrupted envelope: {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"corrupted envelope: {what} is not base64url") from None


def _check_name(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise EnvelopeError(f"{what} must be 1-{MAX_NAME_CHARS} printable characters")
    return value.encode("utf-8")


def _derive_key(shared: bytes, epk: bytes, station_pub: bytes, station_name: str, rid: str) -> bytes:
    info = _INFO_PREFIX
    for part in (_check_name(station_name, "station name"), _check_name(rid, "registration id")):
        info += len(part).to_bytes(2, "big") + part
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + station_pub, info=info)
    return hkdf.derive(shared)


def _header_text(epk: bytes, station_public: bytes, nonce: bytes, station_name: str, rid: str) -> str:
    header = {
        "alg": ALGORITHM,
        "epk": _b64e(epk),
        "kid": station_key_id(station_public),
        "nonce": _b64e(nonce),
        "rid": rid,
        "stn": station_name,
        "v": ENVELOPE_VERSION,
    }
    return _b64e(
        json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    )


def seal_for_station(
    station_public: bytes, plaintext: bytes, *, station_name: str, registration_id: str
) -> str:
    """Encrypt `plaintext` so that only `station_name` holding the key can open it, for one unit."""
    if len(station_public) != PUBLIC_KEY_BYTES:
        raise EnvelopeError(f"station public key is {len(station_public)} bytes; X25519 keys are 32")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise EnvelopeError(
            f"config is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} fit an envelope"
        )
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(station_public))
    key = _derive_key(shared, epk, station_public, station_name, registration_id)
    nonce = os.urandom(NONCE_BYTES)
    header_text = _header_text(epk, station_public, nonce, station_name, registration_id)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, header_text.encode("ascii"))
    return f"{header_text}.{_b64e(ciphertext)}"


def _split(envelope: str) -> tuple[str, dict[str, Any], bytes]:
    if not isinstance(envelope, str):
        raise EnvelopeError("corrupted envelope: not text")
    if len(envelope) > MAX_ENVELOPE_CHARS:
        raise EnvelopeError(f"corrupted envelope: {len(envelope)} characters, at most {MAX_ENVELOPE_CHARS}")
    if not envelope.isascii() or envelope.count(".") != 1:
        raise EnvelopeError("corrupted envelope: expected two base64url parts joined by '.'")
    header_text, body_text = envelope.strip().split(".")
    if len(header_text) > MAX_HEADER_CHARS:
        raise EnvelopeError("corrupted envelope: header too long")
    try:
        header = json.loads(_b64d(header_text, "header"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise EnvelopeError("corrupted envelope: header is not JSON") from None
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise EnvelopeError("corrupted envelope: header fields missing or unknown")
    return header_text, header, _b64d(body_text, "ciphertext")


def _check_header(header: dict[str, Any], keypair: StationKeyPair, station_name: str, rid: str) -> None:
    if type(header["v"]) is not int or header["v"] != ENVELOPE_VERSION or header["alg"] != ALGORITHM:
        raise EnvelopeError(f"unsupported envelope version {header['v']!r} / algorithm {header['alg']!r}")
    if not all(isinstance(header[k], str) for k in ("epk", "kid", "nonce", "rid", "stn")):
        raise EnvelopeError("corrupted envelope: header fields have wrong types")
    if header["stn"] != station_name:
        raise EnvelopeError(
            f"config is not addressed to this station: it is for station {header['stn'][:MAX_NAME_CHARS]!r}, "
            f"this is {station_name!r}"
        )
    if header["kid"] != keypair.key_id:
        raise EnvelopeError(
            f"config is not addressed to this station's key: sealed for key {header['kid'][:16]!r}, this "
            f"station's key is {keypair.key_id!r} (station key re-created? register its new public key)"
        )
    if header["rid"] != rid:
        raise EnvelopeError(
            f"config is not addressed to this unit: it is for {header['rid'][:MAX_NAME_CHARS]!r}, "
            f"the unit on the station is {rid!r}"
        )


def open_from_pipeline(
    keypair: StationKeyPair, envelope: str, *, station_name: str, registration_id: str
) -> bytes:
    """Open an envelope made by `seal_for_station` for this station and this unit."""
    _check_name(station_name, "station name")
    _check_name(registration_id, "registration id")
    header_text, header, ciphertext = _split(envelope)
    _check_header(header, keypair, station_name, registration_id)
    epk = _b64d(header["epk"], "ephemeral key")
    nonce = _b64d(header["nonce"], "nonce")
    if len(epk) != PUBLIC_KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise EnvelopeError("corrupted envelope: ephemeral key or nonce has the wrong length")
    try:
        shared = keypair.exchange(epk)
        key = _derive_key(shared, epk, keypair.public_bytes(), station_name, registration_id)
        return AESGCM(key).decrypt(nonce, ciphertext, header_text.encode("ascii"))
    except (InvalidTag, ValueError):
        raise EnvelopeError(
            "corrupted envelope: authentication failed (altered in transit, or not sealed for "
            f"station {station_name!r} and unit {registration_id!r})"
        ) from None
