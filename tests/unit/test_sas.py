"""SAS tokens and connection strings (azure-notes §1.8, §2.2), against the golden vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.azure.sas import (
    PREFIX,
    ConnectionString,
    ParsedToken,
    SasError,
    generate_token,
    is_expired,
    parse_connection_string,
    parse_token,
    sign,
    verify_signature,
)
from pipeline.domain.keys import SecretKey

VECTORS: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "vectors.json").read_text())
DEVICE_SAS = VECTORS["device_sas"]
DEVICE_KEY = SecretKey.from_base64(DEVICE_SAS["key"])
SE = DEVICE_SAS["se"]
CASES = DEVICE_SAS["cases"]
OTHER_KEY = SecretKey(b"\x42" * 32)


def _token(sr: str, sig: str, se: object, **extra: str) -> str:
    fields = {"sr": sr, "sig": quote_plus(sig), "se": str(se), **extra}
    return PREFIX + "&".join(f"{k}={v}" for k, v in fields.items())


# ---------------------------------------------------------------------------------------------------------
# Golden vectors: the signature covers `sr` exactly as the client sent it
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_sign_matches_golden_vectors_over_sr_as_sent(case: dict[str, str]) -> None:
    assert sign(DEVICE_KEY, f"{case['sr']}\n{SE}") == case["sig"]


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_verify_accepts_each_client_variant(case: dict[str, str]) -> None:
    token = parse_token(_token(case["sr"], case["sig"], SE))

    assert token.sr == case["sr"]  # not normalised
    assert token.sig == case["sig"]  # URL-decoded
    assert verify_signature(token, DEVICE_KEY)
    assert not verify_signature(token, OTHER_KEY)


def test_variants_have_distinct_signatures_so_sr_must_not_be_normalised() -> None:
    assert len({c["sig"] for c in CASES}) == len(CASES)
    first = parse_token(_token(CASES[1]["sr"], CASES[0]["sig"], SE))  # lower-case sr, upper-case sig

    assert not verify_signature(first, DEVICE_KEY)


def test_generate_token_reproduces_the_python_sdk_vector() -> None:
    token = generate_token("0ne00111111/registrations/my-symkey-device", DEVICE_KEY, expiry=SE)

    parsed = parse_token(token)
    assert parsed.sr == CASES[0]["sr"]
    assert parsed.sig == CASES[0]["sig"]
    assert parsed.expiry == SE
    assert parsed.skn is None


def test_generate_token_with_raw_slashes_reproduces_the_aziot_vector() -> None:
    token = generate_token(
        "0ne00111111/registrations/my-symkey-device", DEVICE_KEY, expiry=SE, encode_slashes=False
    )

    assert parse_token(token).sig == CASES[2]["sig"]


def test_generate_token_url_encodes_sig_and_carries_policy() -> None:
    token = generate_token("host/x", DEVICE_KEY, expiry=SE, policy="provisioning service owner")

    assert token.startswith(PREFIX)
    expected_sig = sign(DEVICE_KEY, f"host%2Fx\n{SE}")
    assert f"sig={quote_plus(expected_sig)}&" in token
    assert token.endswith("&skn=provisioning+service+owner")
    assert parse_token(token).skn == "provisioning service owner"


def test_generate_token_default_expiry_is_now_plus_ttl() -> None:
    import time

    before = int(time.time())
    expiry = parse_token(generate_token("r", DEVICE_KEY, ttl=60)).expiry

    assert before + 60 <= expiry <= int(time.time()) + 60


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def test_field_order_does_not_matter() -> None:
    case = CASES[0]
    sig = quote_plus(case["sig"])
    orders = [
        f"sr={case['sr']}&sig={sig}&se={SE}",
        f"se={SE}&sr={case['sr']}&sig={sig}",
        f"sig={sig}&se={SE}&skn=registration&sr={case['sr']}",
    ]

    tokens = [parse_token(PREFIX + body) for body in orders]

    assert {(t.sr, t.sig, t.se) for t in tokens} == {(case["sr"], case["sig"], str(SE))}
    assert all(verify_signature(t, DEVICE_KEY) for t in tokens)


@pytest.mark.parametrize("field", ["sr", "sig", "se", "skn"])
def test_duplicate_fields_are_rejected(field: str) -> None:
    header = _token("r", "c2ln", SE, skn="p") + f"&{field}=1"

    with pytest.raises(SasError, match=f"'{field}' appears twice"):
        parse_token(header)


@pytest.mark.parametrize("missing", ["sr", "sig", "se"])
def test_missing_or_empty_required_field_is_named(missing: str) -> None:
    fields = {"sr": "r", "sig": "c2ln", "se": str(SE)}
    without = PREFIX + "&".join(f"{k}={v}" for k, v in fields.items() if k != missing)
    empty = PREFIX + "&".join(f"{k}={'' if k == missing else v}" for k, v in fields.items())

    for header in (without, empty):
        with pytest.raises(SasError, match=f"has no '{missing}'"):
            parse_token(header)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("Bearer abc", "not a SharedAccessSignature"),
        ("sharedaccesssignature sr=r&sig=s&se=1", "not a SharedAccessSignature"),
        (PREFIX + "sr=r&sig=s&se=1&novalue", "malformed SAS token field 'novalue'"),
        (PREFIX + "sr=r&sig=s&se=1&=x", "malformed SAS token field ''"),
        (PREFIX + "sr=r&sig=s&se=soon", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=-1", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=1663952627.5", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=1234567890123", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=\u00b2", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=\u0661\u0666\u0666\u0663", "'se' is not a Unix time"),
        (PREFIX + "sr=r&sig=s&se=1" + "x" * 5000, "too long"),
    ],
)
def test_malformed_tokens_are_rejected_with_reason(header: str, fragment: str) -> None:
    with pytest.raises(SasError, match=r"SAS|SharedAccessSignature") as excinfo:
        parse_token(header)

    assert fragment in str(excinfo.value)


def test_resource_is_url_decoded_for_comparison() -> None:
    token = parse_token(_token(CASES[1]["sr"], CASES[1]["sig"], SE))

    assert token.resource == "0ne00111111/registrations/my-symkey-device"


@given(
    resource=st.text(min_size=1, max_size=200),
    key=st.binary(min_size=16, max_size=64),
    expiry=st.integers(0, 10**12 - 1),
    policy=st.none() | st.text(max_size=40),
    encode_slashes=st.booleans(),
)
def test_generate_then_parse_round_trips_and_verifies(
    resource: str, key: bytes, expiry: int, policy: str | None, encode_slashes: bool
) -> None:
    secret = SecretKey(key)
    token = parse_token(
        generate_token(resource, secret, expiry=expiry, policy=policy, encode_slashes=encode_slashes)
    )

    assert token.resource == resource
    assert token.expiry == expiry
    assert token.skn == policy
    assert token.sr == quote(resource, safe="" if encode_slashes else "/")
    assert verify_signature(token, secret)


@given(st.text(max_size=300))
def test_parse_token_raises_only_sas_error(text: str) -> None:
    for header in (text, PREFIX + text):
        try:
            token = parse_token(header)
        except SasError:
            continue
        assert isinstance(token.expiry, int)  # whatever parses has a usable expiry


# ---------------------------------------------------------------------------------------------------------
# Verification and expiry
# ---------------------------------------------------------------------------------------------------------


def test_verify_rejects_tampered_fields() -> None:
    good = parse_token(generate_token("host/registrations/dev-1", DEVICE_KEY, expiry=SE))

    tampered = [
        ParsedToken(sr=good.sr.replace("dev-1", "dev-2"), sig=good.sig, se=good.se, skn=None),
        ParsedToken(sr=good.sr, sig=good.sig, se=str(SE + 1), skn=None),
        ParsedToken(sr=good.sr, sig=good.sig[:-2] + "A=", se=good.se, skn=None),
        ParsedToken(sr=good.sr, sig="", se=good.se, skn=None),
        ParsedToken(sr=good.sr, sig="\u00e9" * 44, se=good.se, skn=None),
    ]

    assert verify_signature(good, DEVICE_KEY)
    assert not any(verify_signature(t, DEVICE_KEY) for t in tampered)


def test_sig_sent_with_a_raw_plus_is_not_accepted() -> None:
    # '+' in sig must be URL-encoded (all Microsoft clients do): a raw '+' decodes to a space.
    sr, sig = next((f"r{i}", sig) for i in range(1000) if "+" in (sig := sign(DEVICE_KEY, f"r{i}\n{SE}")))

    raw = parse_token(f"{PREFIX}sr={sr}&sig={sig}&se={SE}")
    encoded = parse_token(f"{PREFIX}sr={sr}&sig={quote_plus(sig)}&se={SE}")

    assert not verify_signature(raw, DEVICE_KEY)
    assert verify_signature(encoded, DEVICE_KEY)


@pytest.mark.parametrize(("now", "expired"), [(SE - 1, False), (SE, True), (SE + 1, True), (0, False)])
def test_is_expired_at_given_time(now: float, expired: bool) -> None:
    token = parse_token(_token("r", "c2ln", SE))

    assert is_expired(token, now=now) is expired


def test_is_expired_uses_the_wall_clock_by_default() -> None:
    assert is_expired(parse_token(_token("r", "c2ln", 1)))
    assert not is_expired(parse_token(_token("r", "c2ln", 10**11)))


# ---------------------------------------------------------------------------------------------------------
# Connection strings
# ---------------------------------------------------------------------------------------------------------

KEY_B64 = DEVICE_SAS["key"]  # ends in '=='


def test_connection_string_parses_and_renders_back() -> None:
    text = (
        "HostName=dps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;"
        f"SharedAccessKey={KEY_B64}"
    )

    cs = parse_connection_string(text)

    assert cs.host_name == "dps.azure-devices-provisioning.net"
    assert cs.key_name == "provisioningserviceowner"
    assert cs.key == DEVICE_KEY  # the '==' at the end of the key survived the split on '='
    assert cs.to_string() == text
    assert parse_connection_string(cs.to_string()) == cs


@pytest.mark.parametrize(
    "text",
    [
        f"hostname=h;sharedaccesskeyname=n;sharedaccesskey={KEY_B64}",
        f"HOSTNAME=h;SHAREDACCESSKEYNAME=n;SHAREDACCESSKEY={KEY_B64}",
        f" SharedAccessKey={KEY_B64} ; HostName=h ; SharedAccessKeyName=n ;",
        f";HostName=h;SharedAccessKeyName=n;SharedAccessKey={KEY_B64};\n",
    ],
)
def test_connection_string_names_are_case_insensitive_and_order_free(text: str) -> None:
    cs = parse_connection_string(text)

    assert (cs.host_name, cs.key_name, cs.key) == ("h", "n", DEVICE_KEY)


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("HostName=h;SharedAccessKeyName=n", "SharedAccessKey"),
        (f"HostName=h;SharedAccessKey={KEY_B64}", "SharedAccessKeyName"),
        (f"SharedAccessKeyName=n;SharedAccessKey={KEY_B64}", "HostName"),
        (f"HostName=;SharedAccessKeyName=n;SharedAccessKey={KEY_B64}", "HostName"),
        ("HostName=h", "SharedAccessKeyName, SharedAccessKey"),
    ],
)
def test_connection_string_missing_parts_are_named(text: str, missing: str) -> None:
    with pytest.raises(SasError, match=f"DPS connection string: missing {missing}$"):
        parse_connection_string(text, what="DPS connection string")


def test_connection_string_part_without_equals_is_rejected() -> None:
    with pytest.raises(SasError, match="part 'garbage' has no '='"):
        parse_connection_string(f"HostName=h;garbage;SharedAccessKeyName=n;SharedAccessKey={KEY_B64}")


@pytest.mark.parametrize("bad_key", ["abc", "not base64!!", base64.b64encode(b"k" * 65).decode()])
def test_connection_string_with_unusable_key_raises_sas_error_without_the_key(bad_key: str) -> None:
    # Regression: a bad key used to escape as KeyFormatError, past callers that catch SasError.
    with pytest.raises(SasError, match="IoT hub connection string SharedAccessKey") as excinfo:
        parse_connection_string(
            f"HostName=h;SharedAccessKeyName=n;SharedAccessKey={bad_key}", what="IoT hub connection string"
        )

    assert bad_key not in str(excinfo.value)


def test_connection_string_repr_and_str_hide_the_key() -> None:
    cs = parse_connection_string(f"HostName=h;SharedAccessKeyName=n;SharedAccessKey={KEY_B64}")

    for shown in (repr(cs), str(cs), repr([cs])):
        assert KEY_B64 not in shown
        assert KEY_B64.rstrip("=")[:10] not in shown
        assert "key=<hidden>" in shown
        assert "'h'" in shown and "'n'" in shown


def test_connection_string_is_a_frozen_value() -> None:
    cs = ConnectionString(host_name="h", key_name="n", key=DEVICE_KEY)

    with pytest.raises(AttributeError):
        cs.host_name = "other"  # type: ignore[misc]
