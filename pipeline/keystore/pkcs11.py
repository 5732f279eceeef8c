"""PKCS#11 custody (the only module that imports python-pkcs11): group keys and the master key in a token.

Responsible for: opening the token from settings with one-line errors naming the setting to fix
(missing module, unknown token, wrong PIN, locked token, missing key object); keeping enrollment-group
keys as non-extractable, sensitive generic secrets and deriving device keys inside the token with
CKM_SHA256_HMAC; sealing with an AES-256 key held in the token (CKM_AES_GCM, the same blob format as
`pipeline.crypto.sealing`, so `keys rotate-master` can move between the two).
Not responsible for: which keys a group has (the database row holds our handles) or DPS.

Group keys enter the token by import (C_CreateObject with CKA_EXTRACTABLE false): DPS needs the key's
value once, when the group is created or rotated, and that happens inside this process before import;
afterwards the value never leaves the token again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from pipeline.crypto.sealing import (
    BLOB_VERSION,
    HEADER_BYTES,
    KEY_ID_BYTES,
    NONCE_BYTES,
    SealError,
    check_context,
)
from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.keystore.ports import GroupKeyStore, KeyStoreError

HANDLE_PREFIX = b"pkcs11:"
GROUP_LABEL = "edgeline-group/{group_id}/{fingerprint}"
GROUP_KEY_BITS = 512  # 64 bytes, as DPS generates


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Where the token is: module path, token label, PIN (from a file or the environment)."""

    module: str
    token_label: str
    pin: str


class Pkcs11Token:
    """One logged-in read-write session, used under a lock (PKCS#11 sessions are not thread-safe)."""

    def __init__(self, settings: TokenSettings) -> None:
        self.settings = settings
        try:
            lib = pkcs11.lib(settings.module)
        except (p11.PKCS11Error, OSError) as exc:
            raise KeyStoreError(
                f"pkcs11_module {settings.module!r} cannot be loaded ({_short(exc)}): set pkcs11_module "
                "(EDGELINE_PKCS11_MODULE) to the HSM's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so"
            ) from None
        try:
            token = lib.get_token(token_label=settings.token_label)
        except (p11.NoSuchToken, p11.MultipleTokensReturned):
            raise KeyStoreError(
                f"no single PKCS#11 token labelled {settings.token_label!r} in {settings.module}: set "
                "pkcs11_token_label (EDGELINE_PKCS11_TOKEN_LABEL)"
            ) from None
        try:
            self._session = token.open(user_pin=settings.pin, rw=True)
        except p11.UserAlreadyLoggedIn:  # login is per process: another part of this process logged in
            self._session = token.open(rw=True)
        except p11.PinIncorrect:
            raise KeyStoreError(
                f"PKCS#11 token {settings.token_label!r} refused the PIN: fix pkcs11_pin_file or "
                "EDGELINE_PKCS11_PIN (each wrong try counts towards the token's lock-out)"
            ) from None
        except p11.PinLocked:
            raise KeyStoreError(
                f"PKCS#11 token {settings.token_label!r} is locked (too many wrong PINs): the security "
                "officer must unlock it and reset the user PIN"
            ) from None
        except p11.PKCS11Error as exc:
            raise KeyStoreError(f"PKCS#11 token {settings.token_label!r}: {_short(exc)}") from None
        self._lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Any]:
        """The open session, held exclusively."""
        with self._lock:
            try:
                yield self._session
            except p11.PKCS11Error as exc:
                raise KeyStoreError(f"PKCS#11 token {self.settings.token_label!r}: {_short(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._session.close()


_SECRET_TEMPLATE: dict[Any, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}


class Pkcs11GroupKeyStore(GroupKeyStore):
    """Group keys as non-extractable CKK_GENERIC_SECRET objects; handles name them by label."""

    name = "pkcs11"

    def __init__(self, token: Pkcs11Token) -> None:
        self._token = token

    def generate(self, group_id: str, slot: str) -> bytes:
        """Generate the key inside the token, readable once (for DPS) until `lock`."""
        with self._token.session() as session:
            key = session.generate_key(
                KeyType.GENERIC_SECRET,
                GROUP_KEY_BITS,
                store=True,
                template={**_SECRET_TEMPLATE, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
            fingerprint = SecretKey(bytes(key[Attribute.VALUE])).fingerprint
            label = GROUP_LABEL.format(group_id=group_id, fingerprint=fingerprint)
            key[Attribute.LABEL] = label
        return HANDLE_PREFIX + label.encode()

    def store(self, group_id: str, slot: str, key: SecretKey) -> bytes:
        """Import a key the process holds, non-extractable at once."""
        label = GROUP_LABEL.format(group_id=group_id, fingerprint=key.fingerprint)
        with self._token.session() as session:
            for old in session.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}):
                old.destroy()  # the same key stored again (a retried rotation): keep one object
            session.create_object(
                {
                    **_SECRET_TEMPLATE,
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.VALUE: key.reveal(),
                    Attribute.LABEL: label,
                }
            )
            try:  # some tokens refuse HMAC keys shorter than the hash (SoftHSM2: < 32 bytes): find out now
                _find(session, label, KeyType.GENERIC_SECRET).sign(b"probe", mechanism=Mechanism.SHA256_HMAC)
            except p11.KeySizeRange:
                _find(session, label, KeyType.GENERIC_SECRET).destroy()
                raise KeyStoreError(
                    f"the PKCS#11 token cannot compute HMAC-SHA256 with this {len(key.reveal())}-byte key of "
                    f"group {group_id!r}: use a key of 32 to 64 bytes (edgeline generates 64)"
                ) from None
        return HANDLE_PREFIX + label.encode()

    def move(self, handle: bytes, group_id: str, from_slot: str, to_slot: str) -> bytes:
        return handle  # the object is the same; slots are the database row's business

    def lock(self, handle: bytes) -> None:
        """CKA_SENSITIVE on, CKA_EXTRACTABLE off: one-way switches (PKCS#11 forbids turning them back)."""
        with self._token.session() as session:
            key = _find(session, _label(handle), KeyType.GENERIC_SECRET)
            if key[Attribute.EXTRACTABLE]:
                key[Attribute.SENSITIVE] = True
                key[Attribute.EXTRACTABLE] = False

    def derive(self, handle: bytes, group_id: str, slot: str, registration_id: str) -> SecretKey:
        label = _label(handle)
        with self._token.session() as session:
            key = _find(session, label, KeyType.GENERIC_SECRET)
            digest = key.sign(registration_id.encode("utf-8"), mechanism=Mechanism.SHA256_HMAC)
        return SecretKey(bytes(digest))

    def fingerprint(self, handle: bytes, group_id: str, slot: str) -> str:
        return _label(handle).rsplit("/", 1)[-1]

    def reveal(self, handle: bytes, group_id: str, slot: str) -> SecretKey | None:
        with self._token.session() as session:
            key = _find(session, _label(handle), KeyType.GENERIC_SECRET)
            if not key[Attribute.EXTRACTABLE] or key[Attribute.SENSITIVE]:
                return None  # locked: the value never leaves the token again
            return SecretKey(bytes(key[Attribute.VALUE]))

    def discard(self, handle: bytes) -> None:
        with self._token.session() as session:
            for key in session.get_objects({Attribute.LABEL: _label(handle)}):
                key.destroy()


class Pkcs11Sealer:
    """Seals with an AES-256 key that never leaves the token; blobs as `pipeline.crypto.sealing.Sealer`'s.

    The 4-byte key id in each blob is the start of the key object's CKA_ID, set when the key is made
    (`create_master_key`), so blobs name the key that sealed them as in-process blobs do.
    """

    def __init__(self, token: Pkcs11Token, label: str) -> None:
        self._token = token
        self.label = label
        with token.session() as session:
            key = _find(session, label, KeyType.AES)
            key_id = bytes(key[Attribute.ID])
        if len(key_id) < KEY_ID_BYTES:
            raise KeyStoreError(
                f"master key {label!r} in the token has no CKA_ID: make it with `keys rotate-master`"
            )
        self._key_id = key_id[:KEY_ID_BYTES]

    @property
    def key_id(self) -> str:
        return self._key_id.hex()

    def __repr__(self) -> str:
        return f"Pkcs11Sealer(label {self.label!r}, key id {self.key_id})"

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        aad = bytes([BLOB_VERSION]) + self._key_id + check_context(context)
        nonce = os.urandom(NONCE_BYTES)
        with self._token.session() as session:
            key = _find(session, self.label, KeyType.AES)
            sealed = key.encrypt(
                bytes(plaintext), mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
        return aad[: 1 + KEY_ID_BYTES] + nonce + bytes(sealed)

    def unseal(self, blob: bytes, *, context: str) -> bytes:
        aad_context = check_context(context)
        if len(blob) < HEADER_BYTES + 16 or blob[0] != BLOB_VERSION:
            raise SealError(f"sealed secret for {context!r} is not a sealed blob")
        if bytes(blob[1 : 1 + KEY_ID_BYTES]) != self._key_id:
            raise SealError(
                f"sealed secret for {context!r} was sealed with another master key (blob key id "
                f"{bytes(blob[1 : 1 + KEY_ID_BYTES]).hex()}, token key {self.label!r} id {self.key_id})"
            )
        nonce = bytes(blob[1 + KEY_ID_BYTES : HEADER_BYTES])
        params = GCMParams(nonce, bytes(blob[: 1 + KEY_ID_BYTES]) + aad_context)
        try:
            with self._token.session() as session:
                key = _find(session, self.label, KeyType.AES)
                return bytes(
                    key.decrypt(
                        bytes(blob[HEADER_BYTES:]), mechanism=Mechanism.AES_GCM, mechanism_param=params
                    )
                )
        except KeyStoreError:
            raise SealError(f"sealed secret for {context!r} failed authentication in the token") from None

    def seal_key(self, key: SecretKey, *, context: str) -> bytes:
        return self.seal(key.reveal(), context=context)

    def unseal_key(self, blob: bytes, *, context: str) -> SecretKey:
        try:
            return SecretKey(self.unseal(blob, context=context))
        except KeyFormatError as exc:
            raise SealError(f"sealed secret for {context!r} is not a key: {exc}") from None

    def sealed_with_current_key(self, blob: bytes) -> bool:
        return bytes(blob[1 : 1 + KEY_ID_BYTES]) == self._key_id


def create_master_key(token: Pkcs11Token, label: str) -> str:
    """Generate a non-extractable AES-256 master key in the token (if `label` is new); return its id."""
    with token.session() as session:
        existing = list(session.get_objects({Attribute.LABEL: label, Attribute.KEY_TYPE: KeyType.AES}))
        if not existing:
            key_id = os.urandom(8)
            session.generate_key(
                KeyType.AES,
                256,
                label=label,
                id=key_id,
                store=True,
                template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.PRIVATE: True},
            )
            return key_id[:KEY_ID_BYTES].hex()
        return bytes(existing[0][Attribute.ID])[:KEY_ID_BYTES].hex()


def _find(session: Any, label: str, key_type: KeyType) -> Any:
    try:
        return session.get_key(label=label, key_type=key_type)
    except p11.NoSuchKey:
        raise KeyStoreError(
            f"key {label!r} is missing from the PKCS#11 token: restore the token from its backup, or check "
            "pkcs11_token_label (EDGELINE_PKCS11_TOKEN_LABEL)"
        ) from None


def _label(handle: bytes) -> str:
    if not handle.startswith(HANDLE_PREFIX):
        raise KeyStoreError(
            "this group's key is sealed in the database, not in the PKCS#11 token: set key_store = "
            '"database", or move the group with `edgeline group create --key-store pkcs11` on a new group'
        )
    return handle[len(HANDLE_PREFIX) :].decode()


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]
