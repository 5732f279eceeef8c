"""Configs encrypted to one station for one unit: round trips, misaddressing, tampering, key files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.crypto.envelope import (
    MAX_ENVELOPE_CHARS,
    MAX_PLAINTEXT_BYTES,
    EnvelopeError,
    StationKeyPair,
    open_from_pipeline,
    seal_for_station,
)
from pipeline.crypto.station_key import StationKeyError, public_key_from_text, public_key_to_text

SECRET = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
CONFIG = f'[provisioning.attestation]\nsymmetric_key = {{ value = "{SECRET}" }}\n'.encode()
RID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture(scope="module")
def s1() -> StationKeyPair:
    return StationKeyPair.generate()


@pytest.fixture(scope="module")
def s2() -> StationKeyPair:
    return StationKeyPair.generate()


def seal(station: StationKeyPair, name: str = "S1", rid: str = RID, plaintext: bytes = CONFIG) -> str:
    return seal_for_station(station.public_bytes(), plaintext, station_name=name, registration_id=rid)


def open_as(station: StationKeyPair, envelope: str, name: str = "S1", rid: str = RID) -> bytes:
    return open_from_pipeline(station, envelope, station_name=name, registration_id=rid)


def test_round_trip(s1: StationKeyPair) -> None:
    envelope = seal(s1)
    assert envelope.isascii() and envelope.count(".") == 1
    assert open_as(s1, envelope) == CONFIG


def test_envelope_hides_the_config(s1: StationKeyPair) -> None:
    envelope = seal(s1)
    assert SECRET not in envelope
    assert SECRET.encode() not in base64.urlsafe_b64decode(envelope.split(".")[1] + "==")


def test_header_format(s1: StationKeyPair) -> None:
    header_text = seal(s1).split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_text + "=" * (-len(header_text) % 4)))
    assert header["v"] == 1 and header["alg"] == "X25519-HKDF-SHA256-A256GCM"
    assert header["kid"] == s1.key_id and header["stn"] == "S1" and header["rid"] == RID
    assert len(base64.urlsafe_b64decode(header["epk"] + "=")) == 32


@settings(max_examples=25)
@given(plaintext=st.binary(max_size=2048))
def test_round_trip_property(plaintext: bytes) -> None:
    station = StationKeyPair.from_private_bytes(bytes(range(32)))
    assert open_as(station, seal(station, plaintext=plaintext)) == plaintext


def test_config_for_s1_does_not_open_at_s2_by_name(s1: StationKeyPair, s2: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="not addressed to this station") as info:
        open_as(s2, seal(s1), name="S2")
    assert "'S1'" in str(info.value) and "'S2'" in str(info.value)


def test_config_for_s1_does_not_open_with_another_key(s1: StationKeyPair, s2: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="not addressed to this station's key"):
        open_as(s2, seal(s1), name="S1")


def test_config_for_another_unit_does_not_open(s1: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="not addressed to this unit"):
        open_as(s1, seal(s1), rid="sn-other")


def _forge_header(envelope: str, **changes: object) -> str:
    header_text, body = envelope.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_text + "=" * (-len(header_text) % 4)))
    header.update(changes)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + body


@pytest.mark.parametrize("changes", [{"stn": "S2"}, {"rid": "sn-other"}])
def test_forged_clear_header_still_fails_authentication(s1: StationKeyPair, changes: dict[str, str]) -> None:
    """Rewriting the clear station/unit in the header does not readdress a config: both are in the KDF."""
    envelope = _forge_header(seal(s1), **changes)
    with pytest.raises(EnvelopeError, match="corrupted envelope: authentication failed"):
        open_as(s1, envelope, name=changes.get("stn", "S1"), rid=changes.get("rid", RID))


def test_tampered_ciphertext_byte(s1: StationKeyPair) -> None:
    header, body = seal(s1).split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[3] ^= 0x20
    tampered = header + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(EnvelopeError, match="corrupted envelope") as info:
        open_as(s1, tampered)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "envelope",
    ["", "no-dot", "a.b.c", "!!!.???", "e30.AAAA", "bm90IGpzb24.AAAA", "é.x", "x" * (MAX_ENVELOPE_CHARS + 1)],
)
def test_garbage_envelopes(s1: StationKeyPair, envelope: str) -> None:
    with pytest.raises(EnvelopeError, match="corrupted envelope"):
        open_as(s1, envelope)


def test_longest_non_ascii_names_round_trip(s1: StationKeyPair) -> None:
    name, rid = "站" * 128, "\U0001f600" * 128
    assert open_as(s1, seal(s1, name=name, rid=rid), name=name, rid=rid) == CONFIG


def test_deeply_nested_header_is_corrupted_not_a_crash(s1: StationKeyPair) -> None:
    header = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode()
    with pytest.raises(EnvelopeError, match="corrupted envelope"):
        open_as(s1, header + ".AAAA")


@pytest.mark.parametrize("version", [True, "1", 1.0])
def test_version_must_be_the_integer_1(s1: StationKeyPair, version: object) -> None:
    with pytest.raises(EnvelopeError, match="unsupported envelope version"):
        open_as(s1, _forge_header(seal(s1), v=version))


def test_wrong_types_in_header(s1: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="corrupted envelope"):
        open_as(s1, _forge_header(seal(s1), epk=5))


def test_unsupported_version(s1: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="unsupported envelope version 2"):
        open_as(s1, _forge_header(seal(s1), v=2))


def test_oversized_plaintext_is_refused(s1: StationKeyPair) -> None:
    with pytest.raises(EnvelopeError, match="at most"):
        seal(s1, plaintext=bytes(MAX_PLAINTEXT_BYTES + 1))


def test_largest_plaintext_fits_the_envelope_limit(s1: StationKeyPair) -> None:
    envelope = seal(s1, plaintext=bytes(MAX_PLAINTEXT_BYTES))
    assert len(envelope) <= MAX_ENVELOPE_CHARS
    assert len(open_as(s1, envelope)) == MAX_PLAINTEXT_BYTES


@pytest.mark.parametrize("name", ["", "S\n1", "x" * 129])
def test_bad_station_names(s1: StationKeyPair, name: str) -> None:
    with pytest.raises(EnvelopeError, match="station name"):
        seal(s1, name=name)


def test_bad_public_key_size() -> None:
    with pytest.raises(EnvelopeError, match="32"):
        seal_for_station(b"short", CONFIG, station_name="S1", registration_id=RID)


def test_keypair_repr_hides_private_key(s1: StationKeyPair) -> None:
    text = repr(s1) + str(s1)
    assert s1.key_id in text
    assert s1.private_bytes().hex() not in text
    assert base64.b64encode(s1.private_bytes()).decode() not in text


def test_public_key_text_form_round_trip(s1: StationKeyPair) -> None:
    text = s1.public_text()
    assert len(text) == 43 and text == public_key_to_text(s1.public_bytes())
    assert public_key_from_text(text) == s1.public_bytes()
    assert public_key_from_text(text + "=\n") == s1.public_bytes()


@pytest.mark.parametrize("text", ["", "abc", "+" * 43, "A" * 44])
def test_public_key_text_form_rejects_garbage(text: str) -> None:
    with pytest.raises(StationKeyError, match="43 base64url"):
        public_key_from_text(text)


def test_public_key_text_form_rejects_non_canonical_text(s1: StationKeyPair) -> None:
    text = s1.public_text()
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(text[-1])
    tweaked = text[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    with pytest.raises(StationKeyError, match="canonical"):
        public_key_from_text(tweaked)


def test_private_bytes_round_trip(s1: StationKeyPair) -> None:
    again = StationKeyPair.from_private_bytes(s1.private_bytes())
    assert again.public_bytes() == s1.public_bytes()


@posix_only
def test_save_writes_0600_and_load_round_trips(tmp_path: Path, s1: StationKeyPair) -> None:
    path = s1.save(tmp_path / "station.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert StationKeyPair.load(path).public_bytes() == s1.public_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["station.key"]  # no temp file left behind


@posix_only
def test_load_refuses_a_group_readable_file(tmp_path: Path, s1: StationKeyPair) -> None:
    path = s1.save(tmp_path / "station.key")
    path.chmod(0o640)
    with pytest.raises(StationKeyError, match="chmod 600") as info:
        StationKeyPair.load(path)
    assert "0640" in str(info.value)


def test_save_refuses_to_overwrite(tmp_path: Path, s1: StationKeyPair, s2: StationKeyPair) -> None:
    path = s1.save(tmp_path / "station.key")
    with pytest.raises(StationKeyError, match="already exists"):
        s2.save(path)
    s2.save(path, overwrite=True)
    assert StationKeyPair.load(path).public_bytes() == s2.public_bytes()


def test_save_into_a_missing_directory_is_a_clear_error(tmp_path: Path, s1: StationKeyPair) -> None:
    with pytest.raises(StationKeyError, match="cannot write station key file"):
        s1.save(tmp_path / "missing" / "station.key")


def test_load_missing_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(StationKeyError, match="edgeline station init"):
        StationKeyPair.load(tmp_path / "nope.key")


@pytest.mark.parametrize(
    "content", [b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_load_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "station.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StationKeyError, match="not an unencrypted PKCS#8 PEM"):
        StationKeyPair.load(path)


def test_load_refuses_a_non_x25519_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = tmp_path / "station.key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(StationKeyError, match="not an X25519 key"):
        StationKeyPair.load(path)
