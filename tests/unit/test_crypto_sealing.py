"""Sealing keys at rest: round trips, and clear errors that never show key material."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crypto.sealing import (
    BLOB_VERSION,
    HEADER_BYTES,
    MAX_PLAINTEXT_BYTES,
    TAG_BYTES,
    Sealer,
    SealError,
    key_id_of,
)
from pipeline.domain.keys import SecretKey

MASTER = SecretKey(bytes(range(32)))
OTHER_MASTER = SecretKey(bytes(range(1, 33)))
DEVICE_KEY = SecretKey.from_base64("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=")
CONTEXT = "device-key:sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


def assert_no_key_material(text: str, *keys: SecretKey) -> None:
    for key in keys:
        assert key.reveal_base64() not in text
        assert key.reveal().hex() not in text


def test_seal_key_round_trip() -> None:
    sealer = Sealer(MASTER)
    blob = sealer.seal_key(DEVICE_KEY, context=CONTEXT)
    assert sealer.unseal_key(blob, context=CONTEXT) == DEVICE_KEY


def test_blob_layout_is_version_key_id_nonce_ciphertext_tag() -> None:
    blob = Sealer(MASTER).seal(b"secret", context=CONTEXT)
    assert blob[0] == BLOB_VERSION
    assert blob[1:5] == key_id_of(MASTER)
    assert len(blob) == HEADER_BYTES + len(b"secret") + TAG_BYTES
    assert b"secret" not in blob


def test_two_seals_of_the_same_key_differ_by_nonce() -> None:
    sealer = Sealer(MASTER)
    assert sealer.seal_key(DEVICE_KEY, context=CONTEXT) != sealer.seal_key(DEVICE_KEY, context=CONTEXT)


@given(plaintext=st.binary(max_size=512), context=st.text(min_size=1, max_size=64).filter(str.isprintable))
def test_round_trip_property(plaintext: bytes, context: str) -> None:
    sealer = Sealer(MASTER)
    assert sealer.unseal(sealer.seal(plaintext, context=context), context=context) == plaintext


def test_wrong_master_key_names_both_key_ids() -> None:
    blob = Sealer(MASTER).seal_key(DEVICE_KEY, context=CONTEXT)
    with pytest.raises(SealError, match="sealed with a different master key") as info:
        Sealer(OTHER_MASTER).unseal_key(blob, context=CONTEXT)
    message = str(info.value)
    assert MASTER.fingerprint in message and OTHER_MASTER.fingerprint in message
    assert_no_key_material(message, MASTER, OTHER_MASTER, DEVICE_KEY)


def test_blob_copied_to_another_row_does_not_open() -> None:
    sealer = Sealer(MASTER)
    blob = sealer.seal_key(DEVICE_KEY, context=CONTEXT)
    with pytest.raises(SealError, match="another row") as info:
        sealer.unseal_key(blob, context="device-key:sn-other")
    assert_no_key_material(str(info.value), MASTER, DEVICE_KEY)


@pytest.mark.parametrize("position", [HEADER_BYTES, HEADER_BYTES + 5, -1, HEADER_BYTES - 1])
def test_tampered_byte_is_detected(position: int) -> None:
    sealer = Sealer(MASTER)
    blob = bytearray(sealer.seal_key(DEVICE_KEY, context=CONTEXT))
    blob[position] ^= 0x01
    with pytest.raises(SealError, match="altered") as info:
        sealer.unseal_key(bytes(blob), context=CONTEXT)
    assert_no_key_material(str(info.value), MASTER, DEVICE_KEY)


def test_tampered_key_id_reads_as_other_master_key() -> None:
    sealer = Sealer(MASTER)
    blob = bytearray(sealer.seal_key(DEVICE_KEY, context=CONTEXT))
    blob[1] ^= 0xFF
    with pytest.raises(SealError, match="different master key"):
        sealer.unseal(bytes(blob), context=CONTEXT)


@pytest.mark.parametrize("blob", [b"", b"\x01", bytes(HEADER_BYTES + TAG_BYTES - 1)])
def test_truncated_blob(blob: bytes) -> None:
    with pytest.raises(SealError, match="truncated"):
        Sealer(MASTER).unseal(blob, context=CONTEXT)


def test_unknown_version() -> None:
    blob = bytearray(Sealer(MASTER).seal(b"x", context=CONTEXT))
    blob[0] = 2
    with pytest.raises(SealError, match="unsupported format version 2"):
        Sealer(MASTER).unseal(bytes(blob), context=CONTEXT)


@pytest.mark.parametrize("size", [16, 31, 33, 64])
def test_master_key_must_be_32_bytes(size: int) -> None:
    key = SecretKey(bytes([7]) * size)
    with pytest.raises(SealError, match="exactly 32") as info:
        Sealer(key)
    assert_no_key_material(str(info.value), key)


@pytest.mark.parametrize("context", ["", "a\nb", "x" * 513])
def test_bad_context_is_refused(context: str) -> None:
    with pytest.raises(SealError, match="context"):
        Sealer(MASTER).seal(b"x", context=context)


def test_oversized_plaintext_is_refused() -> None:
    with pytest.raises(SealError, match="at most"):
        Sealer(MASTER).seal(bytes(MAX_PLAINTEXT_BYTES + 1), context=CONTEXT)


def test_unsealed_bytes_that_are_not_a_key() -> None:
    sealer = Sealer(MASTER)
    blob = sealer.seal(b"short", context=CONTEXT)
    with pytest.raises(SealError, match="not a key") as info:
        sealer.unseal_key(blob, context=CONTEXT)
    assert "short" not in str(info.value)


def test_repr_shows_only_the_key_id() -> None:
    text = repr(Sealer(MASTER))
    assert MASTER.fingerprint in text
    assert_no_key_material(text, MASTER)
