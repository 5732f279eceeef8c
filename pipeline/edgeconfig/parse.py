"""Read the DPS symmetric-key provisioning back out of an IoT Edge config file.

Responsible for: what a (simulated) device does at boot — parse `/etc/aziot/config.toml` or
`/etc/iotedge/config.yaml` with a real TOML/YAML parser and return its DPS endpoint, ID scope,
registration ID and key. Accepts Microsoft's own files as they are, including an inline key without
"=" padding (azure-notes §4.2).
Not responsible for: rendering (`pipeline.edgeconfig.render`), registering with DPS, or any
provisioning source other than DPS with an inline symmetric key (those fail with a clear error).

Input is untrusted (it comes back from a device): its size is bounded, and parser errors are
reported by line and column only — never with the parser's own message, which quotes the offending
line and so could quote the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import yaml

from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.edgeconfig.model import ConfigFormat, ConfigParseError, ParsedProvisioning, format_for_version

MAX_CONFIG_BYTES = 256 * 1024
_TOML_POSITION = re.compile(r"at line \d+, column \d+|at end of document")


def _format_of(path_or_version: str) -> ConfigFormat:
    suffixes = PurePath(path_or_version).suffixes
    if ".yaml" in suffixes or ".yml" in suffixes:
        return ConfigFormat.IOTEDGE_YAML
    if ".toml" in suffixes:
        return ConfigFormat.AZIOT_TOML
    return format_for_version(path_or_version)


def _load(content: bytes, file_format: ConfigFormat) -> object:
    if len(content) > MAX_CONFIG_BYTES:
        raise ConfigParseError(f"config is {len(content)} bytes; at most {MAX_CONFIG_BYTES} accepted")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigParseError(f"config is not UTF-8 (byte {exc.start})") from None
    if file_format is ConfigFormat.AZIOT_TOML:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # Keep only the position: some tomllib messages quote a character of the document.
            position = _TOML_POSITION.search(str(exc))
            where = f" ({position.group(0)})" if position else ""
            raise ConfigParseError(f"{file_format.path} is not valid TOML{where}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigParseError(f"{file_format.path} is not valid YAML{where}") from None


def _table(parent: object, key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    if value is None:
        raise ConfigParseError(f"{where} has no '{key}' section (is the DPS block still commented out?)")
    if not isinstance(value, Mapping):
        raise ConfigParseError(f"{where}: '{key}' is not a table/mapping")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigParseError(f"{where}: '{key}' is missing or not a non-empty string")
    return value


def _expect(table: Mapping[str, Any], key: str, expected: str, where: str) -> None:
    value = table.get(key)
    if value != expected:
        raise ConfigParseError(
            f"{where}: {key} is {str(value)[:40]!r}, edgeline provisions only {key} = {expected!r}"
        )


def _inline_key(attestation: Mapping[str, Any], file_format: ConfigFormat, where: str) -> str:
    value = attestation.get("symmetric_key")
    if file_format is ConfigFormat.AZIOT_TOML:
        if isinstance(value, Mapping) and "value" not in value and "uri" in value:
            raise ConfigParseError(
                f"{where}: symmetric_key is given by URI, not inline; edgeline flashes inline keys"
            )
        value = value.get("value") if isinstance(value, Mapping) else None
    if not isinstance(value, str):
        raise ConfigParseError(f"{where}: symmetric_key is missing or not a string")
    return value


def parse_provisioning(content: bytes, path_or_version: str) -> ParsedProvisioning:
    """Return the DPS symmetric-key provisioning in a config file, given its path or IoT Edge version."""
    file_format = _format_of(path_or_version)
    where = file_format.path
    document = _load(content, file_format)
    provisioning = _table(document, "provisioning", where)
    _expect(provisioning, "source", "dps", f"{where} [provisioning]")
    scope_key = "id_scope" if file_format is ConfigFormat.AZIOT_TOML else "scope_id"
    attestation = _table(provisioning, "attestation", f"{where} [provisioning]")
    at_where = f"{where} [provisioning.attestation]"
    _expect(attestation, "method", "symmetric_key", at_where)
    try:
        key = SecretKey.from_base64(
            _inline_key(attestation, file_format, at_where), what=f"{at_where} symmetric_key"
        )
    except KeyFormatError as exc:
        raise ConfigParseError(str(exc)) from None
    return ParsedProvisioning(
        global_endpoint=_text(provisioning, "global_endpoint", where),
        id_scope=_text(provisioning, scope_key, where),
        registration_id=_text(attestation, "registration_id", at_where),
        device_key=key,
    )
