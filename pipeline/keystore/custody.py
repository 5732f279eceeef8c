"""Build the key custody a process uses from settings: the master-key sealer and the group-key store.

`key_store = "database"` (default): group keys sealed in the database under the master key.
`key_store = "pkcs11"`: group keys in the PKCS#11 token, derivation inside it.
`pkcs11_master_key_label` set: the master sealing key is an AES key in the token (else the 32-byte key
from master_key / master_key_file). `master_key_previous_file` adds the old key for unsealing only,
during `edgeline keys rotate-master`. Every problem is a one-line ConfigError naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Settings, read_key_file
from pipeline.crypto.sealing import KeySealer, RingSealer, Sealer, SealError
from pipeline.keystore.ports import GroupKeyStore, KeyStoreError
from pipeline.keystore.sealed import SealedGroupKeyStore

if TYPE_CHECKING:
    from pipeline.keystore.pkcs11 import Pkcs11Token


@dataclass
class KeyCustody:
    """The sealer and group-key store of one process; `close()` logs out of the token."""

    sealer: KeySealer
    group_keys: GroupKeyStore
    token: Pkcs11Token | None = field(default=None)

    def close(self) -> None:
        if self.token is not None:
            self.token.close()


def open_token(settings: Settings) -> Pkcs11Token:
    """Log in to the PKCS#11 token the settings name."""
    try:
        from pipeline.keystore.pkcs11 import Pkcs11Token, TokenSettings
    except ImportError:
        raise ConfigError(
            "key_store = pkcs11 / pkcs11_master_key_label need python-pkcs11: pip install 'edgeline[hsm]'"
        ) from None

    missing = [name for name in ("pkcs11_module", "pkcs11_token_label") if not getattr(settings, name)]
    if missing:
        raise ConfigError(
            f"key_store = pkcs11 needs {' and '.join(missing)} "
            f"({', '.join('EDGELINE_' + m.upper() for m in missing)})"
        )
    try:
        return Pkcs11Token(
            TokenSettings(settings.pkcs11_module, settings.pkcs11_token_label, settings.load_pkcs11_pin())
        )
    except KeyStoreError as exc:
        raise ConfigError(str(exc)) from None


def master_sealer(settings: Settings, token: Pkcs11Token | None) -> KeySealer:
    """The sealer for the configured master key (in process, or in the token), with the previous key."""
    try:
        current: KeySealer
        if settings.pkcs11_master_key_label:
            from pipeline.keystore.pkcs11 import Pkcs11Sealer

            assert token is not None
            current = Pkcs11Sealer(token, settings.pkcs11_master_key_label)
        else:
            current = Sealer(settings.load_master_key())
        if not settings.master_key_previous_file:
            return current
        previous = Sealer(read_key_file(settings.master_key_previous_file, "master_key_previous_file"))
        return RingSealer(current, [previous])
    except (KeyStoreError, SealError) as exc:
        raise ConfigError(str(exc)) from None


def open_key_custody(settings: Settings) -> KeyCustody:
    """Open what the settings ask for; a token only when something lives in it."""
    needs_token = settings.key_store == "pkcs11" or bool(settings.pkcs11_master_key_label)
    token = open_token(settings) if needs_token else None
    try:
        sealer = master_sealer(settings, token)
        if settings.key_store == "pkcs11":
            from pipeline.keystore.pkcs11 import Pkcs11GroupKeyStore

            assert token is not None
            return KeyCustody(sealer, Pkcs11GroupKeyStore(token), token)
        return KeyCustody(sealer, SealedGroupKeyStore(sealer), token)
    except BaseException:
        if token is not None:
            token.close()
        raise


def key_custody_problem(settings: Settings) -> str | None:
    """What is wrong with the key custody settings (module, token, PIN, key objects), or None (doctor)."""
    try:
        custody = open_key_custody(settings)
    except ConfigError as exc:
        return str(exc)
    try:
        if settings.pkcs11_master_key_label:  # prove the master key object works: seal and unseal once
            blob = custody.sealer.seal(b"edgeline doctor probe", context="doctor")
            custody.sealer.unseal(blob, context="doctor")
    except (KeyStoreError, SealError) as exc:
        return str(exc)
    finally:
        custody.close()
    return None
