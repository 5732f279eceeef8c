"""Device identity: parse what a device reports and build its DPS registration ID.

Responsible for: strict parsing of serial numbers and MAC addresses read from a device, and turning
them into a registration ID by a configurable template (architecture §3).
Not responsible for: talking to devices, or deciding whether an identity conflicts with a known unit
(that is the keyer's job, against the database).

Also responsible for the MAC admission rules (`MacPolicy`, `check_mac_admission`): which parsed MACs
may become a unit at all. They are separate from parsing because audit look-ups and key tooling must
still accept any well-formed MAC (the article's own example, A1:B2:..., has the group bit set).

Every rejection names the offending character or rule, so an operator can act on it. Nothing is ever
silently rewritten: a serial with `_` or `.` is rejected rather than mapped to `-`, because `007_888`
and `007.888` would otherwise become the same unit.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

MAX_SERIAL_LENGTH = 64
MAX_REGISTRATION_ID_LENGTH = 128
DEFAULT_TEMPLATE = "sn-{serial}-mac-{mac}"

_SERIAL_CHARS = frozenset(string.ascii_letters + string.digits + "-")
_REG_ID_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:\-]?)[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$")
_TEMPLATE_FIELDS = frozenset({"serial", "mac", "mac_hex"})


class IdentityError(ValueError):
    """A serial, MAC or registration ID that edgeline refuses, with the reason in plain words."""


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f"{char!r}"
    return f"U+{ord(char):04X}"


def parse_serial(raw: str) -> str:
    """Return the serial number as reported, after checking it is usable in a registration ID."""
    serial = raw.strip()
    if not serial:
        raise IdentityError("serial number is empty: check the device's serial source")
    if len(serial) > MAX_SERIAL_LENGTH:
        raise IdentityError(
            f"serial number is {len(serial)} characters long; at most {MAX_SERIAL_LENGTH} allowed"
        )
    for position, char in enumerate(serial):
        if char not in _SERIAL_CHARS:
            raise IdentityError(
                f"serial number {serial!r} contains {_describe(char)} at position {position + 1}; "
                "only letters, digits and '-' are allowed"
            )
    if serial.startswith("-") or serial.endswith("-"):
        raise IdentityError(f"serial number {serial!r} starts or ends with '-'")
    return serial


def parse_mac(raw: str) -> str:
    """Return the MAC in canonical form `aa:bb:cc:dd:ee:ff` (accepts `:`, `-` or no separators)."""
    text = raw.strip()
    if not _MAC_RE.match(text):
        bad = next((c for c in text if c not in string.hexdigits + ":-"), None)
        detail = f"contains {_describe(bad)}" if bad else "is not six hex octets"
        raise IdentityError(f"MAC address {text[:40]!r} {detail}; expected e.g. A1:B2:C3:D4:E5:F6")
    digits = re.sub(r"[:\-]", "", text).lower()
    if digits in ("000000000000", "ffffffffffff"):
        raise IdentityError(f"MAC address {text!r} is not a unit's own address (all zeros or broadcast)")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def validate_registration_id(registration_id: str) -> str:
    """Check a registration ID against the article's rule (stricter than DPS's) and return it."""
    if not registration_id:
        raise IdentityError("registration ID is empty")
    if len(registration_id) > MAX_REGISTRATION_ID_LENGTH:
        raise IdentityError(
            f"registration ID is {len(registration_id)} characters long; DPS allows at most "
            f"{MAX_REGISTRATION_ID_LENGTH}: shorten the template or the serial"
        )
    for position, char in enumerate(registration_id):
        if char not in _REG_ID_CHARS:
            raise IdentityError(
                f"registration ID {registration_id!r} contains {_describe(char)} at position {position + 1}; "
                "only lowercase letters, digits and '-' are allowed"
            )
    if registration_id[0] == "-" or registration_id[-1] == "-":
        raise IdentityError(f"registration ID {registration_id!r} starts or ends with '-'")
    return registration_id


def check_template(template: str) -> str:
    """Reject a registration-ID template that names unknown fields or cannot tell units apart."""
    try:
        parsed = [
            (name, spec, conv)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:  # unbalanced braces: str.format would fail later, far from the setting
        raise IdentityError(f"registration ID template {template!r} is malformed: {exc}") from None
    if any(spec or conv for _, spec, conv in parsed):  # `{mac:d}`, `{serial!x}` make str.format raise
        raise IdentityError(f"registration ID template {template!r}: write fields plainly, e.g. {{serial}}")
    fields = {name for name, _, _ in parsed}
    unknown = fields - _TEMPLATE_FIELDS
    if unknown:
        raise IdentityError(
            f"registration ID template {template!r} uses unknown field(s) {sorted(unknown)}; "
            f"known: {sorted(_TEMPLATE_FIELDS)}"
        )
    if not fields & {"serial", "mac", "mac_hex"}:
        raise IdentityError(f"registration ID template {template!r} uses neither serial nor MAC")
    return template


_OUI_RE = re.compile(r"^[0-9a-f]{6}$")


def parse_oui(raw: str) -> str:
    """Return an OUI (first three MAC octets) as six lowercase hex digits; accepts `:`/`-` separators."""
    digits = re.sub(r"[:\-]", "", raw.strip()).lower()
    if not _OUI_RE.match(digits):
        raise IdentityError(f"OUI {raw[:40]!r} is not three hex octets; expected e.g. 00:1B:44 or 001B44")
    return digits


@dataclass(frozen=True, slots=True)
class MacPolicy:
    """Which MACs may become a unit: factories differ in the OUIs they buy and in local addresses."""

    allowed_ouis: frozenset[str] = frozenset()  # six lowercase hex digits each; empty: any OUI
    allow_locally_administered: bool = True

    @classmethod
    def from_settings(cls, allowed_ouis: tuple[str, ...], allow_locally_administered: bool) -> MacPolicy:
        """Build the policy from the `mac_*` settings, raising IdentityError on a malformed OUI."""
        return cls(frozenset(parse_oui(o) for o in allowed_ouis), allow_locally_administered)


def check_mac_admission(mac: str, policy: MacPolicy) -> str:
    """Return the canonical `mac` if it may be a unit's own address, else raise naming the rule broken."""
    first = int(mac[:2], 16)
    if first & 0x01:
        raise IdentityError(
            f"MAC address {mac} is a group (multicast) address: the I/G bit of the first octet is set, "
            "so it cannot be a device's own address (rule: no group MACs)"
        )
    if first & 0x02 and not policy.allow_locally_administered:
        raise IdentityError(
            f"MAC address {mac} is locally administered (U/L bit of the first octet set), which "
            "mac_allow_locally_administered = false refuses"
        )
    oui = mac.replace(":", "")[:6]
    if policy.allowed_ouis and oui not in policy.allowed_ouis:
        raise IdentityError(
            f"MAC address {mac} has OUI {oui.upper()}, which is not in mac_allowed_ouis "
            f"({', '.join(sorted(o.upper() for o in policy.allowed_ouis))})"
        )
    return mac


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a device says it is, parsed: serial as reported, MAC canonical."""

    serial: str
    mac: str

    @classmethod
    def parse(cls, serial: str, mac: str, policy: MacPolicy | None = None) -> DeviceIdentity:
        """Parse raw serial and MAC strings, raising IdentityError naming the problem.

        With a `policy` (stations and the keyer: admitting a unit) the MAC must also pass its rules.
        """
        identity = cls(serial=parse_serial(serial), mac=parse_mac(mac))
        if policy is not None:
            check_mac_admission(identity.mac, policy)
        return identity

    def registration_id(self, template: str = DEFAULT_TEMPLATE) -> str:
        """Build the registration ID by the template, lowercased, MAC separators as '-'."""
        rendered = check_template(template).format(
            serial=self.serial.lower(),
            mac=self.mac.replace(":", "-"),
            mac_hex=self.mac.replace(":", ""),
        )
        return validate_registration_id(rendered)
