"""What goes into an IoT Edge provisioning config, validated before anything is rendered.

Responsible for: the input (`ProvisioningConfig`), output (`RenderedConfig`) and read-back
(`ParsedProvisioning`) values, the IoT Edge version → file format choice, and the value rules (no
control characters anywhere, ID scope and hostname formats, known re-provisioning modes).
Not responsible for: producing text (`pipeline.edgeconfig.render`), reading it back
(`pipeline.edgeconfig.parse`), or where values come from (product settings, the keyer, DPS).

Error messages name the field and the rule, never the device key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

from pipeline.domain.identity import IdentityError, validate_registration_id
from pipeline.domain.keys import SecretKey

REPROVISIONING_MODES = ("Dynamic", "AlwaysOnStartup", "OnErrorOnly")
MAX_URL_CHARS = 2048
_ID_SCOPE = re.compile(r"[0-9A-Za-z]{1,64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_VERSION = re.compile(r"1\.(\d{1,3})")


class EdgeConfigError(ValueError):
    """Base of config errors. Messages name the field or line, never the device key."""


class InvalidConfigValue(EdgeConfigError):
    """A provisioning value that cannot be rendered safely or that IoT Edge would reject."""


class ConfigParseError(EdgeConfigError):
    """A config file that does not hold a usable DPS symmetric-key provisioning section."""


class ConfigFormat(Enum):
    """The two on-device config files, by the IoT Edge generation that reads them."""

    AZIOT_TOML = "/etc/aziot/config.toml"  # IoT Edge 1.2 and later
    IOTEDGE_YAML = "/etc/iotedge/config.yaml"  # IoT Edge 1.1 (LTS, end of life Dec 2022)

    @property
    def path(self) -> str:
        """Where the file lives on the device."""
        return self.value


def format_for_version(edge_version: str) -> ConfigFormat:
    """Choose the file format for an IoT Edge version: "1.1" → YAML, "1.2" and later → TOML."""
    match = _VERSION.fullmatch(edge_version.strip()) if isinstance(edge_version, str) else None
    if match is None or int(match.group(1)) < 1:
        raise InvalidConfigValue(
            f"edge_version {edge_version!r} is not supported: use '1.1' (config.yaml) or '1.2' and later "
            "(config.toml)"
        )
    return ConfigFormat.IOTEDGE_YAML if int(match.group(1)) == 1 else ConfigFormat.AZIOT_TOML


def _position_of_bad_char(value: str) -> str | None:
    for position, char in enumerate(value):
        if not char.isprintable():
            return f"U+{ord(char):04X} at position {position + 1}"
    return None


def check_text(value: object, name: str, *, secret: bool = False) -> str:
    """Return `value` if it is a non-empty string without control characters; name `name` if not."""
    if not isinstance(value, str) or not value:
        raise InvalidConfigValue(f"{name} must be a non-empty string")
    bad = _position_of_bad_char(value)
    if bad is not None:
        shown = "" if secret else f" {value[:80]!r}"
        raise InvalidConfigValue(
            f"{name}{shown} contains a control character ({bad}); it cannot go in a config"
        )
    return value


def _check_url(value: object, name: str, schemes: tuple[str, ...]) -> None:
    text = check_text(value, name)
    if len(text) > MAX_URL_CHARS or not text.isascii() or any(c.isspace() for c in text):
        raise InvalidConfigValue(
            f"{name} must be an ASCII URL without spaces, at most {MAX_URL_CHARS} characters"
        )
    parts = urlsplit(text)
    if parts.scheme not in schemes or (parts.scheme != "file" and not parts.netloc):
        raise InvalidConfigValue(f"{name} {text[:80]!r} must be a {' or '.join(schemes)} URL")


def _check_optional(config: ProvisioningConfig) -> None:
    if config.hostname is not None:
        name = check_text(config.hostname, "hostname")
        if len(name) > 253 or not _HOSTNAME.fullmatch(name):
            raise InvalidConfigValue(f"hostname {name[:80]!r} is not a valid DNS host name (RFC 1123)")
    mode = config.auto_reprovisioning_mode
    if mode is not None and mode not in REPROVISIONING_MODES:
        raise InvalidConfigValue(
            f"auto_reprovisioning_mode {mode!r} is not one of {', '.join(REPROVISIONING_MODES)}"
        )
    if config.payload_uri is not None:
        _check_url(config.payload_uri, "payload_uri", ("file",))
    for flag in ("always_reprovision_on_startup", "dynamic_reprovisioning"):
        if getattr(config, flag) not in (None, True, False):
            raise InvalidConfigValue(f"{flag} must be true, false or unset")


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    """Everything a device needs to register with DPS by symmetric key. Validated on creation."""

    global_endpoint: str
    id_scope: str
    registration_id: str
    device_key: SecretKey
    hostname: str | None = None
    auto_reprovisioning_mode: str | None = None  # 1.2+: "Dynamic" | "AlwaysOnStartup" | "OnErrorOnly"
    payload_uri: str | None = None  # 1.2+ (Edge >= 1.4 reads it): file:// URI of the DPS payload JSON
    always_reprovision_on_startup: bool | None = None  # 1.1 only
    dynamic_reprovisioning: bool | None = None  # 1.1 only

    def __post_init__(self) -> None:
        _check_url(self.global_endpoint, "global_endpoint", ("https", "http"))
        scope = check_text(self.id_scope, "id_scope")
        if not _ID_SCOPE.fullmatch(scope):
            raise InvalidConfigValue(
                f"id_scope {scope[:80]!r} must be 1-64 ASCII letters and digits, like '0ne00A1B2C3' "
                "(the 'ID Scope' on the DPS overview page)"
            )
        try:
            validate_registration_id(check_text(self.registration_id, "registration_id"))
        except IdentityError as exc:
            raise InvalidConfigValue(str(exc)) from None
        if not isinstance(self.device_key, SecretKey):
            raise InvalidConfigValue("device_key must be a SecretKey")
        _check_optional(self)


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """A rendered config file: where it goes, its bytes (hidden from repr: they hold the key), its hash."""

    path: str
    content: bytes = field(repr=False)
    sha256: str


@dataclass(frozen=True, slots=True)
class ParsedProvisioning:
    """The DPS symmetric-key provisioning a device reads from its config at boot."""

    global_endpoint: str
    id_scope: str
    registration_id: str
    device_key: SecretKey
