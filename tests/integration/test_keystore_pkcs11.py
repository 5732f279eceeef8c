"""Group keys and the master key in a real SoftHSM2 token: derivation, non-extractability, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.crypto.sealing import Sealer, SealError
from pipeline.domain.keys import SecretKey
from pipeline.keystore.pkcs11 import (
    Pkcs11GroupKeyStore,
    Pkcs11Sealer,
    Pkcs11Token,
    TokenSettings,
    create_master_key,
)
from pipeline.keystore.ports import KeyStoreError
from pipeline.keystore.sealed import SealedGroupKeyStore

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "vectors.json").read_text())["derive_device_key"]


@pytest.fixture
def token(softhsm: dict[str, str]) -> Iterator[Pkcs11Token]:
    opened = Pkcs11Token(TokenSettings(**softhsm))
    yield opened
    opened.close()


HSM_VECTORS = [v for v in VECTORS if len(SecretKey.from_base64(v["group_key"]).reveal()) >= 32]


@pytest.mark.parametrize("vector", HSM_VECTORS, ids=[v["note"] for v in HSM_VECTORS])
def test_golden_vectors_hold_through_the_token(token: Pkcs11Token, vector: dict[str, str]) -> None:
    store = Pkcs11GroupKeyStore(token)
    group_key = SecretKey.from_base64(vector["group_key"])
    handle = store.store("vectors", f"v-{group_key.fingerprint}", group_key)
    derived = store.derive(handle, "vectors", "primary", vector["registration_id"])
    assert derived.reveal_base64() == vector["device_key"]
    assert store.fingerprint(handle, "vectors", "primary") == group_key.fingerprint
    assert store.matches(handle, "vectors", "primary", group_key)
    assert not store.matches(handle, "vectors", "primary", SecretKey.generate())


def test_a_key_the_token_cannot_hmac_with_is_refused_at_once(token: Pkcs11Token) -> None:
    short = SecretKey.from_base64(next(v for v in VECTORS if v not in HSM_VECTORS)["group_key"])
    with pytest.raises(KeyStoreError, match="use a key of 32 to 64 bytes"):
        Pkcs11GroupKeyStore(token).store("g-short", "primary", short)


def test_the_group_key_cannot_be_extracted(token: Pkcs11Token, softhsm: dict[str, str]) -> None:
    store = Pkcs11GroupKeyStore(token)
    secret = SecretKey.generate()
    handle = store.store("g-extract", "primary", secret)
    assert store.reveal(handle, "g-extract", "primary") is None
    label = handle.removeprefix(b"pkcs11:").decode()
    # Ask the token directly, as an attacker holding the PIN would, from another process: the value is
    # not readable, and the key cannot be wrapped out either.
    attack = (
        "import sys, pkcs11\n"
        "from pkcs11 import Attribute, KeyType\n"
        "module, token, pin, label = sys.argv[1:]\n"
        "with pkcs11.lib(module).get_token(token_label=token).open(user_pin=pin, rw=True) as s:\n"
        "    key = s.get_key(label=label)\n"
        "    print('flags', key[Attribute.EXTRACTABLE], key[Attribute.SENSITIVE])\n"
        "    try:\n"
        "        print('VALUE', key[Attribute.VALUE].hex())\n"
        "    except pkcs11.exceptions.PKCS11Error as e:\n"
        "        print('value refused', type(e).__name__)\n"
        "    wrapper = s.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True})\n"
        "    try:\n"
        "        print('WRAPPED', wrapper.wrap_key(key).hex())\n"
        "    except pkcs11.exceptions.PKCS11Error as e:\n"
        "        print('wrap refused', type(e).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", attack, softhsm["module"], softhsm["token_label"], softhsm["pin"], label],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "flags False True" in done.stdout
    assert "value refused" in done.stdout and "wrap refused" in done.stdout
    assert (
        secret.reveal().hex() not in done.stdout
        and "VALUE" not in done.stdout
        and "WRAPPED" not in done.stdout
    )


def test_discard_removes_the_object(token: Pkcs11Token) -> None:
    store = Pkcs11GroupKeyStore(token)
    handle = store.store("g-discard", "secondary", SecretKey.generate())
    store.discard(handle)
    with pytest.raises(KeyStoreError, match="missing from the PKCS#11 token"):
        store.derive(handle, "g-discard", "secondary", "sn-1")


def test_master_key_in_the_token_seals_and_unseals(token: Pkcs11Token) -> None:
    key_id = create_master_key(token, "edgeline-master-test")
    assert create_master_key(token, "edgeline-master-test") == key_id  # idempotent
    sealer = Pkcs11Sealer(token, "edgeline-master-test")
    secret = SecretKey.generate()
    blob = sealer.seal_key(secret, context="device-key:sn-1")
    assert blob[1:5].hex() == key_id and sealer.sealed_with_current_key(blob)
    assert sealer.unseal_key(blob, context="device-key:sn-1") == secret
    with pytest.raises(SealError):
        sealer.unseal_key(blob, context="device-key:sn-2")  # bound to its row
    with pytest.raises(SealError, match="another master key"):
        sealer.unseal(Sealer(SecretKey.generate(32)).seal(b"x" * 16, context="c"), context="c")


def test_database_store_keeps_working_unchanged() -> None:
    store = SealedGroupKeyStore(Sealer(SecretKey.generate(32)))
    vector = VECTORS[0]
    handle = store.store("g", "primary", SecretKey.from_base64(vector["group_key"]))
    assert (
        store.derive(handle, "g", "primary", vector["registration_id"]).reveal_base64()
        == vector["device_key"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"module": "/nonexistent/libhsm.so"}, "pkcs11_module"),
        ({"token_label": "no-such-token"}, "pkcs11_token_label"),
        ({"pin": "0000"}, "refused the PIN"),
    ],
)
def test_setup_errors_are_one_line_and_name_the_setting(
    softhsm: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(KeyStoreError, match=message) as caught:
        Pkcs11Token(TokenSettings(**{**softhsm, **change}))
    assert "\n" not in str(caught.value) and softhsm["pin"] not in str(caught.value)


def test_custody_problems_are_named_for_doctor(softhsm: dict[str, str]) -> None:
    from pipeline.config import Settings
    from pipeline.keystore.custody import key_custody_problem

    base = Settings(
        key_store="pkcs11",
        pkcs11_module=softhsm["module"],
        pkcs11_token_label=softhsm["token_label"],
        pkcs11_pin=softhsm["pin"],
        master_key="A" * 43 + "=",
    )
    assert key_custody_problem(base) is None
    assert "pkcs11_module" in (key_custody_problem(Settings(key_store="pkcs11")) or "")
    wrong_pin = key_custody_problem(Settings(**{**_fields(base), "pkcs11_pin": "0000"}))
    assert wrong_pin is not None and "refused the PIN" in wrong_pin
    missing = key_custody_problem(Settings(**{**_fields(base), "pkcs11_master_key_label": "no-such-key"}))
    assert missing is not None and "missing from the PKCS#11 token" in missing


def _fields(settings: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}  # type: ignore[arg-type]
