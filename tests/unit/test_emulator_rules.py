"""Pure rules of the emulator: wire formats, SAS golden vectors, allocation, records, token properties."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.azure.sas import generate_token, parse_token, verify_signature
from pipeline.domain.keys import SecretKey
from pipeline.emulator import records, wire
from pipeline.emulator.auth import check_device_token_scope
from pipeline.emulator.provisioning import choose_hub, stable_index
from pipeline.emulator.store import GROUP_MARKER, Registrations

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "vectors.json").read_text())
HUBS = ("hub-1.azure-devices.net", "hub-2.azure-devices.net")


@pytest.mark.parametrize("case", VECTORS["device_sas"]["cases"], ids=lambda c: c["note"])
def test_device_sas_golden_vectors_verify_and_name_the_right_resource(case: dict[str, str]) -> None:
    sas = VECTORS["device_sas"]
    token = parse_token(
        f"SharedAccessSignature sr={case['sr']}&sig={quote(case['sig'], safe='')}&se={sas['se']}"
    )
    assert verify_signature(token, SecretKey.from_base64(sas["key"]))
    check_device_token_scope(token, "0NE00111111", "my-symkey-device")  # case-insensitive resource


def test_wire_formats() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", wire.utc_timestamp())
    assert re.fullmatch(
        r'"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"', base64.b64decode(wire.new_etag()).decode()
    )
    assert re.fullmatch(r"\d\.[0-9a-f]{16}\.[0-9a-f-]{36}", wire.new_operation_id())
    assert wire.unquote_etag('"abc="') == "abc=" and wire.unquote_etag("abc=") == "abc="


def test_allocation_rules() -> None:
    assert choose_hub({"iotHubs": [HUBS[1]]}, "x", HUBS, "static") == HUBS[1]
    assert choose_hub({}, "x", HUBS, "static") is None  # static needs a named hub when several are linked
    assert choose_hub({}, "x", HUBS[:1], "static") == HUBS[0]
    assert choose_hub({"iotHubs": ["unlinked.azure-devices.net"]}, "x", HUBS, "hashed") is None
    assert choose_hub({"allocationPolicy": "custom"}, "x", HUBS, "hashed") is None
    assert {choose_hub({}, f"sn-{i}", HUBS, "hashed") for i in range(20)} == set(HUBS)


@given(st.text(min_size=1, max_size=64))
def test_stable_index_is_case_insensitive_and_in_range(registration_id: str) -> None:
    index = stable_index(registration_id, 3)
    assert 0 <= index < 3
    assert index == stable_index(registration_id.lower(), 3)


REG_IDS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,40}", fullmatch=True)
SCOPES = st.from_regex(r"0ne[0-9A-F]{8}", fullmatch=True)


@given(REG_IDS, SCOPES, st.booleans(), st.booleans(), st.booleans())
def test_every_client_encoding_is_accepted(
    reg_id: str, scope: str, lower_scope: bool, raw_slashes: bool, with_skn: bool
) -> None:
    key = SecretKey(b"k" * 32)
    resource = f"{scope.lower() if lower_scope else scope}/registrations/{reg_id}"
    header = generate_token(
        resource, key, policy="registration" if with_skn else None, encode_slashes=not raw_slashes
    )
    token = parse_token(header)
    assert verify_signature(token, key)
    check_device_token_scope(token, scope, reg_id)


@given(st.text(max_size=200))
def test_token_parser_never_crashes_unexpectedly(text: str) -> None:
    with contextlib.suppress(ValueError):  # SasError is a ValueError; anything else is a bug
        parse_token("SharedAccessSignature " + text)


def test_records_generate_keys_and_drop_nulls() -> None:
    body = {
        "registrationId": "a",
        "attestation": {"type": "symmetricKey", "symmetricKey": None},
        "deviceId": None,
    }
    record = records.build_record(body, "registrationId", "A", None)
    assert "deviceId" not in record and record["provisioningStatus"] is None
    assert len(base64.b64decode(record["attestation"]["symmetricKey"]["secondaryKey"])) == 64
    assert records.without_keys(record)["attestation"] == {"type": "symmetricKey"}
    with pytest.raises(wire.ApiError):
        records.build_record({**body, "provisioningStatus": "maybe"}, "registrationId", "a", None)


def test_registrations_index_each_group_in_query_order() -> None:
    registrations = Registrations()
    for rid, group in [("a", "G1"), ("B", "g2"), ("c", "g1"), ("d", "")]:
        registrations.put(rid, {"registrationId": rid, GROUP_MARKER: group})
    assert [r["registrationId"] for r in registrations.of_group("g1")] == ["a", "c"]
    assert [r["registrationId"] for r in registrations.of_group("G2")[0:5]] == ["B"]
    assert len(registrations.of_group("nobody")) == 0

    registrations.put("A", {"registrationId": "a", GROUP_MARKER: "g1", "status": "assigned"})  # same group
    assert [r.get("status") for r in registrations.of_group("g1")] == ["assigned", None]
    registrations.put("c", {"registrationId": "c", GROUP_MARKER: "g2"})  # moved to another group
    assert [r["registrationId"] for r in registrations.of_group("g2")] == ["B", "c"]
    registrations.delete("b")
    assert [r["registrationId"] for r in registrations.of_group("g2")] == ["c"]
    assert registrations.of_group("g1")[0]["registrationId"] == "a"

    registrations.restore(registrations.snapshot(), "registrationId")
    assert [r["registrationId"] for r in registrations.of_group("g1")] == ["a"]
    registrations.clear()
    assert len(registrations.of_group("g2")) == 0
