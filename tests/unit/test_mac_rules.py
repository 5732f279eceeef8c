"""MAC admission rules (issue #11 defect 2): group bit, OUI allow-list, locally administered. Pure."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import ConfigError, load_settings
from pipeline.domain.identity import (
    DeviceIdentity,
    IdentityError,
    MacPolicy,
    check_mac_admission,
    parse_mac,
    parse_oui,
)

ANY = MacPolicy()
STRICT = MacPolicy(allowed_ouis=frozenset({"001b44", "f4f5d8"}), allow_locally_administered=False)

octets = st.lists(st.integers(0, 255), min_size=6, max_size=6)


def mac_of(values: list[int]) -> str:
    return ":".join(f"{v:02x}" for v in values)


@pytest.mark.parametrize(
    "mac, policy, rule",
    [
        ("01:00:5e:00:00:01", ANY, "group (multicast) address: the I/G bit"),  # IPv4 multicast
        ("33:33:00:00:00:01", ANY, "I/G bit"),  # IPv6 multicast
        ("01:80:c2:00:00:0e", ANY, "I/G bit"),  # LLDP
        ("a1:b2:c3:d4:e5:f6", ANY, "I/G bit"),  # the article's example is a group address
        ("02:00:00:00:00:01", STRICT, "locally administered (U/L bit"),
        ("00:1b:45:00:00:01", STRICT, "OUI 001B45, which is not in mac_allowed_ouis (001B44, F4F5D8)"),
    ],
)
def test_refused_macs_name_the_rule(mac: str, policy: MacPolicy, rule: str) -> None:
    with pytest.raises(IdentityError, match=re.escape(rule)):
        check_mac_admission(mac, policy)


@pytest.mark.parametrize(
    "mac, policy",
    [
        ("00:1b:44:11:22:33", STRICT),
        ("f4:f5:d8:00:00:01", STRICT),
        ("02:ed:00:00:00:01", ANY),  # the simulators' locally administered MACs, allowed by default
        ("00:00:00:00:00:01", ANY),
    ],
)
def test_admitted_macs(mac: str, policy: MacPolicy) -> None:
    assert check_mac_admission(mac, policy) == mac


def test_identity_parse_applies_the_policy_only_when_given() -> None:
    # Audit look-ups and key tooling parse any well-formed MAC; stations and the keyer admit units.
    assert DeviceIdentity.parse("007-888-ABC", "A1:B2:C3:D4:E5:F6").mac == "a1:b2:c3:d4:e5:f6"
    with pytest.raises(IdentityError, match="I/G bit"):
        DeviceIdentity.parse("007-888-ABC", "A1:B2:C3:D4:E5:F6", ANY)


@given(octets)
def test_group_bit_is_refused_under_every_policy(values: list[int]) -> None:
    values[0] |= 0x01
    for policy in (ANY, STRICT, MacPolicy(allowed_ouis=frozenset({mac_of(values)[:8].replace(":", "")}))):
        with pytest.raises(IdentityError, match="I/G bit"):
            check_mac_admission(mac_of(values), policy)


@given(octets, st.booleans())
def test_locally_administered_follows_the_setting(values: list[int], allow: bool) -> None:
    values[0] = (values[0] & ~0x01) | 0x02
    policy = MacPolicy(allow_locally_administered=allow)
    if allow:
        assert check_mac_admission(mac_of(values), policy) == mac_of(values)
    else:
        with pytest.raises(IdentityError, match="mac_allow_locally_administered"):
            check_mac_admission(mac_of(values), policy)


@given(octets, st.sets(st.binary(min_size=3, max_size=3).map(bytes.hex), max_size=4))
def test_oui_allow_list_admits_exactly_its_ouis(values: list[int], ouis: set[str]) -> None:
    values[0] &= ~0x03  # unicast, universally administered: only the OUI rule decides
    mac = mac_of(values)
    policy = MacPolicy(allowed_ouis=frozenset(ouis))
    admitted = not ouis or mac.replace(":", "")[:6] in ouis
    if admitted:
        assert check_mac_admission(mac, policy) == mac
    else:
        with pytest.raises(IdentityError, match="mac_allowed_ouis"):
            check_mac_admission(mac, policy)


@given(octets)
def test_admission_never_raises_anything_but_identity_error(values: list[int]) -> None:
    mac = mac_of(values)
    try:
        check_mac_admission(parse_mac(mac), STRICT)
    except IdentityError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("raw", ["00:1B:44", "00-1b-44", "001B44", " 001b44 "])
def test_parse_oui_accepts_the_usual_forms(raw: str) -> None:
    assert parse_oui(raw) == "001b44"


@pytest.mark.parametrize("raw", ["", "001B4", "00:1B:44:55", "GG1B44", "00_1B_44"])
def test_parse_oui_rejects_other_shapes(raw: str) -> None:
    with pytest.raises(IdentityError, match="is not three hex octets"):
        parse_oui(raw)


def test_settings_build_the_policy_and_name_bad_values() -> None:
    env = {"EDGELINE_MAC_ALLOWED_OUIS": "00:1B:44, f4f5d8", "EDGELINE_MAC_ALLOW_LOCALLY_ADMINISTERED": "no"}
    assert load_settings(env=env).mac_policy() == STRICT
    with pytest.raises(ConfigError, match=r"^mac_allowed_ouis \(EDGELINE_MAC_ALLOWED_OUIS\): OUI 'xyz'"):
        load_settings(env={"EDGELINE_MAC_ALLOWED_OUIS": "xyz"})
    with pytest.raises(ConfigError, match=r"rework_assigned \(EDGELINE_REWORK_ASSIGNED\) must be"):
        load_settings(env={"EDGELINE_REWORK_ASSIGNED": "sometimes"})
    assert load_settings(env={}).rework_assigned == "refuse"
