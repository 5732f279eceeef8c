"""Device identity: serial/MAC parsing and registration IDs (architecture §3). Pure, no I/O."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipeline.domain.identity import (
    DEFAULT_TEMPLATE,
    MAX_REGISTRATION_ID_LENGTH,
    MAX_SERIAL_LENGTH,
    DeviceIdentity,
    IdentityError,
    check_template,
    parse_mac,
    parse_serial,
    validate_registration_id,
)

# ---------------------------------------------------------------------------------------------------------
# The architecture §3 example
# ---------------------------------------------------------------------------------------------------------


def test_design_example_builds_the_articles_registration_id() -> None:
    identity = DeviceIdentity.parse("007-888-ABC", "A1:B2:C3:D4:E5:F6")

    assert identity.serial == "007-888-ABC"  # kept as reported
    assert identity.mac == "a1:b2:c3:d4:e5:f6"  # canonical
    assert identity.registration_id() == "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


def test_default_template_is_the_design_one() -> None:
    assert DEFAULT_TEMPLATE == "sn-{serial}-mac-{mac}"


def test_mac_hex_template_field_has_no_separators() -> None:
    identity = DeviceIdentity.parse("007-888-ABC", "A1:B2:C3:D4:E5:F6")

    assert identity.registration_id("dev-{serial}-{mac_hex}") == "dev-007-888-abc-a1b2c3d4e5f6"


# ---------------------------------------------------------------------------------------------------------
# MAC addresses
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "A1:B2:C3:D4:E5:F6",
        "a1:b2:c3:d4:e5:f6",
        "A1-B2-C3-D4-E5-F6",
        "a1-b2-c3-d4-e5-f6",
        "A1B2C3D4E5F6",
        "a1b2c3d4e5f6",
        "a1:B2:c3:D4:e5:F6",
        "  A1:B2:C3:D4:E5:F6\r\n",  # as read from a serial line
    ],
)
def test_parse_mac_accepts_the_usual_forms(raw: str) -> None:
    assert parse_mac(raw) == "a1:b2:c3:d4:e5:f6"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("A1:B2:C3:D4:E5:G6", "'G'"),
        ("A1:B2:C3:D4:E5:F6:", None),
        ("A1 B2 C3 D4 E5 F6", "U+0020"),
        ("A1.B2.C3.D4.E5.F6", "'.'"),
        ("A1:B2:C3:D4:E5:F\u00e9", "'\u00e9'"),
        ("A1:B2:C3:D4:E5:F6\x00", "U+0000"),
    ],
)
def test_parse_mac_rejects_naming_the_offending_character(raw: str, named: str | None) -> None:
    with pytest.raises(IdentityError, match="MAC address") as excinfo:
        parse_mac(raw)

    if named is not None:
        assert named in str(excinfo.value)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "A1:B2:C3:D4:E5",  # five octets
        "A1:B2:C3:D4:E5:F6:07",  # seven octets
        "A1:B2-C3:D4-E5:F6",  # mixed separators
        "A1B2C3D4E5F",  # eleven digits
        "A1::B2:C3:D4:E5:F6",
        "A:B2:C3:D4:E5:F6",
    ],
)
def test_parse_mac_rejects_shapes_other_than_six_octets(raw: str) -> None:
    with pytest.raises(IdentityError, match=r"expected e\.g\. A1:B2:C3:D4:E5:F6"):
        parse_mac(raw)


@pytest.mark.parametrize(
    "raw", ["00:00:00:00:00:00", "000000000000", "FF:FF:FF:FF:FF:FF", "ff-ff-ff-ff-ff-ff"]
)
def test_parse_mac_rejects_all_zero_and_broadcast(raw: str) -> None:
    with pytest.raises(IdentityError, match="all zeros or broadcast"):
        parse_mac(raw)


# ---------------------------------------------------------------------------------------------------------
# Serial numbers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "007-888-ABC", "abcXYZ019", "A" * MAX_SERIAL_LENGTH, "a-b-c"])
def test_parse_serial_accepts_letters_digits_and_inner_dashes(raw: str) -> None:
    assert parse_serial(raw) == raw


def test_parse_serial_strips_line_endings_around_the_value() -> None:
    assert parse_serial("  007-888-ABC\r\n") == "007-888-ABC"


@pytest.mark.parametrize(
    ("raw", "named", "position"),
    [
        ("007_888", "'_'", 4),
        ("007.888", "'.'", 4),
        ("007 888", "U+0020", 4),
        ("007\u00e9888", "'\u00e9'", 4),
        ("00\u0663", "'\u0663'", 3),  # ARABIC-INDIC DIGIT THREE is a digit, but not ASCII
        ("007\x07888", "U+0007", 4),
        ("007\x00", "U+0000", 4),
        ("ABC/1", "'/'", 4),
    ],
)
def test_parse_serial_rejects_naming_character_and_position(raw: str, named: str, position: int) -> None:
    with pytest.raises(IdentityError) as excinfo:
        parse_serial(raw)

    message = str(excinfo.value)
    assert named in message
    assert f"position {position}" in message


@pytest.mark.parametrize("raw", ["", "   ", "\r\n"])
def test_parse_serial_rejects_empty(raw: str) -> None:
    with pytest.raises(IdentityError, match="empty"):
        parse_serial(raw)


@pytest.mark.parametrize("raw", ["-007", "007-", "-"])
def test_parse_serial_rejects_leading_or_trailing_dash(raw: str) -> None:
    with pytest.raises(IdentityError, match="starts or ends with '-'"):
        parse_serial(raw)


def test_parse_serial_rejects_overlong() -> None:
    with pytest.raises(IdentityError, match=f"{MAX_SERIAL_LENGTH + 1} characters long"):
        parse_serial("A" * (MAX_SERIAL_LENGTH + 1))


def test_serials_differing_by_separator_are_never_merged() -> None:
    # '_' and '.' are rejected, not mapped to '-': otherwise 007_888 and 007.888 would be one unit.
    for raw in ("007_888", "007.888"):
        with pytest.raises(IdentityError):
            parse_serial(raw)


# ---------------------------------------------------------------------------------------------------------
# Registration IDs and templates
# ---------------------------------------------------------------------------------------------------------


def test_registration_id_of_exactly_128_characters_is_valid() -> None:
    rid = "x" * (MAX_REGISTRATION_ID_LENGTH - 1) + "1"

    assert validate_registration_id(rid) == rid


def test_registration_id_over_128_characters_is_rejected_with_a_hint() -> None:
    with pytest.raises(IdentityError, match=r"129 characters long.*at most 128.*shorten"):
        validate_registration_id("x" * 129)


def test_template_that_renders_over_128_characters_is_rejected() -> None:
    identity = DeviceIdentity.parse("A" * MAX_SERIAL_LENGTH, "A1:B2:C3:D4:E5:F6")
    template = "{serial}-{serial}-{mac}"  # 64 + 1 + 64 + 1 + 17 = 147

    with pytest.raises(IdentityError, match="147 characters long"):
        identity.registration_id(template)


@pytest.mark.parametrize(
    ("rid", "fragment"),
    [
        ("", "empty"),
        ("Sn-1", "'S' at position 1"),
        ("sn_1", "'_' at position 3"),
        ("sn 1", "U+0020 at position 3"),
        ("sn-\u00e9", "'\u00e9' at position 4"),
        ("-sn-1", "starts or ends with '-'"),
        ("sn-1-", "starts or ends with '-'"),
    ],
)
def test_validate_registration_id_rejects_with_reason(rid: str, fragment: str) -> None:
    with pytest.raises(IdentityError, match="registration ID") as excinfo:
        validate_registration_id(rid)

    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("template", ["{serial}", "{mac}", "{mac_hex}", "unit-{serial}-{mac_hex}"])
def test_check_template_accepts_known_fields(template: str) -> None:
    assert check_template(template) == template


@pytest.mark.parametrize("template", ["sn-{serial}-{batch}", "{}-{mac}", "{0}-{mac}", "{serial.upper}-{mac}"])
def test_check_template_rejects_unknown_fields_naming_them(template: str) -> None:
    with pytest.raises(IdentityError, match=r"unknown field\(s\)"):
        check_template(template)


@pytest.mark.parametrize("template", ["edge-device", "", "sn-{{serial}}"])
def test_check_template_rejects_templates_without_an_identity_field(template: str) -> None:
    with pytest.raises(IdentityError, match="uses neither serial nor MAC"):
        check_template(template)


@pytest.mark.parametrize("template", ["sn-{serial", "sn-serial}", "{mac!x}", "{mac:d}", "{serial!r}-{mac}"])
def test_check_template_rejects_malformed_templates_with_identity_error(template: str) -> None:
    # Regression: these used to escape as a plain ValueError from string.Formatter / str.format.
    with pytest.raises(IdentityError, match="template"):
        DeviceIdentity.parse("1", "02:00:00:00:00:01").registration_id(template)


def test_template_with_uppercase_literal_is_rejected_not_rewritten() -> None:
    identity = DeviceIdentity.parse("1", "02:00:00:00:00:01")

    with pytest.raises(IdentityError, match="'S' at position 1"):
        identity.registration_id("SN-{serial}-{mac}")


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------

_SERIAL_ALPHABET = string.ascii_letters + string.digits + "-"
valid_serials = st.text(_SERIAL_ALPHABET, min_size=1, max_size=MAX_SERIAL_LENGTH).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
mac_octets = st.lists(st.integers(0, 255), min_size=6, max_size=6).filter(
    lambda octets: set(octets) not in ({0}, {255})
)


@st.composite
def raw_macs(draw: st.DrawFn) -> str:
    octets = draw(mac_octets)
    separator = draw(st.sampled_from([":", "-", ""]))
    text = separator.join(f"{o:02x}" for o in octets)
    return draw(st.sampled_from([text, text.upper()]))


@given(valid_serials, raw_macs())
def test_any_valid_identity_gives_a_valid_registration_id(serial: str, mac: str) -> None:
    rid = DeviceIdentity.parse(serial, mac).registration_id()

    assert validate_registration_id(rid) == rid
    assert rid == f"sn-{serial.lower()}-mac-{parse_mac(mac).replace(':', '-')}"


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=60))
def test_parsers_raise_only_identity_error_on_arbitrary_text(serial: str, mac: str, template: str) -> None:
    for parse in (parse_serial, parse_mac, validate_registration_id, check_template):
        with contextlib.suppress(IdentityError):
            parse(serial if parse is not parse_mac else mac)
    with contextlib.suppress(IdentityError):
        DeviceIdentity.parse(serial, mac).registration_id(template)


@given(st.text(max_size=80))
def test_parse_mac_result_is_always_canonical(raw: str) -> None:
    try:
        mac = parse_mac(raw)
    except IdentityError:
        return
    assert len(mac) == 17
    assert all(c in "0123456789abcdef:" for c in mac)


@given(valid_serials, raw_macs(), valid_serials, raw_macs())
def test_default_template_is_injective_except_for_serial_letter_case(
    serial_a: str, mac_a: str, serial_b: str, mac_b: str
) -> None:
    a = DeviceIdentity.parse(serial_a, mac_a)
    b = DeviceIdentity.parse(serial_b, mac_b)
    same_unit = a.serial.lower() == b.serial.lower() and a.mac == b.mac

    assert (a.registration_id() == b.registration_id()) == same_unit


@given(valid_serials, raw_macs())
def test_serial_ending_in_mac_like_text_cannot_impersonate_another_unit(serial: str, mac: str) -> None:
    # The MAC part has a fixed length at the end, so a serial containing "-mac-..." stays distinguishable.
    assume(
        len(serial) <= MAX_SERIAL_LENGTH - len("-mac-02-00-00-00-00-01")
    )  # the tricky serial must be valid
    tricky = DeviceIdentity.parse(f"{serial}-mac-02-00-00-00-00-01", mac)
    plain = DeviceIdentity.parse(serial, "02:00:00:00:00:01")

    assert tricky.registration_id() != plain.registration_id()


def test_serials_differing_only_in_case_collide_by_design() -> None:
    mac = "A1:B2:C3:D4:E5:F6"

    upper = DeviceIdentity.parse("007-888-ABC", mac).registration_id()
    lower = DeviceIdentity.parse("007-888-abc", mac).registration_id()

    assert upper == lower  # the keyer's conflict check (same MAC, other serial) is what catches a real clash
