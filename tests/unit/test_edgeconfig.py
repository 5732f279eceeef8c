"""IoT Edge config rendering and read-back, checked against Microsoft's own files (data/iotedge/)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.keys import SecretKey
from pipeline.edgeconfig import (
    ConfigFormat,
    ConfigParseError,
    InvalidConfigValue,
    ProvisioningConfig,
    format_for_version,
    parse_provisioning,
    render,
)

DATA = Path(__file__).parent / "data" / "iotedge"
REF_TOML = DATA / "apply-dps-symmetric-key-config.toml"
REF_TOML_NO_PAD = DATA / "apply-dps-symmetric-key-no-pad-config.toml"
REF_YAML = DATA / "iotedge-1.1-config.yaml"
REF_TEMPLATE = DATA / "iotedge-config.toml.edge.template"
REF_KEY = "YXppb3QtaWRlbnRpdHktc2VydmljZXxhemlvdC1pZGVudGl0eS1zZXJ2aWNlfGF6aW90LWlkZW50aXR5LXNlcg=="
KEY = SecretKey.from_base64(REF_KEY)
ENDPOINT = "https://global.azure-devices-provisioning.net/"


def reference_config(**changes: Any) -> ProvisioningConfig:
    base = ProvisioningConfig(
        global_endpoint=ENDPOINT, id_scope="0ab1234C5D6", registration_id="my-device", device_key=KEY
    )
    return dataclasses.replace(base, **changes)


def key_structure(node: object) -> object:
    """The nested key sets of a parsed document (values dropped)."""
    if isinstance(node, dict):
        return {key: key_structure(value) for key, value in node.items()}
    return None


def uncomment_block(text: str, title: str) -> str:
    """Uncomment the example block under the last `title` line, as the how-to tells users to."""
    lines = text.splitlines()
    start = len(lines) - lines[::-1].index(title)
    end = start
    while end < len(lines) and lines[end].startswith("#"):
        end += 1
    body = [
        line if line.startswith("##") else line[2:] if line.startswith("# ") else line[1:]
        for line in lines[start:end]
    ]
    return "\n".join(lines[:start] + body + lines[end:]) + "\n"


def dps_symmetric_yaml_reference() -> dict[str, Any]:
    """The 1.1 reference file with its DPS symmetric-key example in place of the manual block."""
    text = REF_YAML.read_text()
    text = re.sub(r'^provisioning:\n  source: "manual"\n.*?\n\n', "", text, count=1, flags=re.M | re.S)
    document = yaml.safe_load(uncomment_block(text, "# DPS provisioning with symmetric key attestation"))
    assert document["provisioning"]["attestation"]["method"] == "symmetric_key"
    return dict(document)


def dps_symmetric_template_text() -> str:
    """The 1.2+ template with its 'DPS provisioning with symmetric key' block uncommented (inline key)."""
    text = uncomment_block(REF_TEMPLATE.read_text(), "## DPS provisioning with symmetric key")
    # The block lists three alternative `symmetric_key` lines; keep the inline one, as the how-to says.
    return re.sub(r"^symmetric_key = \{ uri = .*\n", "", text, flags=re.M)


# --- rendering --------------------------------------------------------------------------------------


def test_golden_toml_parses_to_the_reference_provisioning_table() -> None:
    rendered = render(reference_config(), "1.2")
    assert rendered.path == "/etc/aziot/config.toml"
    assert tomllib.loads(rendered.content.decode()) == tomllib.loads(REF_TOML.read_text())


def test_toml_body_matches_the_reference_file_line_for_line() -> None:
    body = [
        line
        for line in render(reference_config(), "1.2").content.decode().splitlines()
        if not line.startswith("#")
    ]
    assert [line for line in body if line] == [line for line in REF_TOML.read_text().splitlines() if line]


def test_toml_has_comment_header_and_no_timestamp() -> None:
    text = render(reference_config(), "1.2").content.decode()
    assert text.startswith("# ") and "edgeline" in text.splitlines()[0]
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}", text)


def test_toml_with_all_extras_has_the_template_key_structure() -> None:
    config = reference_config(
        hostname="edge-7",
        auto_reprovisioning_mode="AlwaysOnStartup",
        payload_uri="file:///var/secrets/p.json",
    )
    document = tomllib.loads(render(config, "1.2").content.decode())
    template = tomllib.loads(dps_symmetric_template_text())
    assert key_structure(document["provisioning"]) == key_structure(template["provisioning"])
    assert document["hostname"] == "edge-7" and document["auto_reprovisioning_mode"] == "AlwaysOnStartup"
    assert document["provisioning"]["payload"] == {"uri": "file:///var/secrets/p.json"}


def test_toml_without_extras_has_the_apply_test_file_key_structure() -> None:
    document = tomllib.loads(render(reference_config(), "1.2").content.decode())
    assert key_structure(document) == key_structure(tomllib.loads(REF_TOML.read_text()))


def test_yaml_has_the_reference_key_structure() -> None:
    config = reference_config(
        hostname="edge-7", always_reprovision_on_startup=True, dynamic_reprovisioning=False
    )
    rendered = render(config, "1.1")
    assert rendered.path == "/etc/iotedge/config.yaml"
    document = yaml.safe_load(rendered.content)
    reference = dps_symmetric_yaml_reference()
    assert key_structure(document) == key_structure(reference)
    assert document["provisioning"]["attestation"] == {
        "method": "symmetric_key",
        "registration_id": "my-device",
        "symmetric_key": REF_KEY,
    }
    assert document["provisioning"]["scope_id"] == "0ab1234C5D6"
    assert document["provisioning"]["always_reprovision_on_startup"] is True
    assert document["provisioning"]["dynamic_reprovisioning"] is False
    for section in ("agent", "connect", "listen", "homedir", "moby_runtime"):
        assert document[section] == reference[section]


def test_yaml_needs_a_hostname() -> None:
    with pytest.raises(InvalidConfigValue, match=r"hostname is required for IoT Edge 1\.1"):
        render(reference_config(), "1.1")


@pytest.mark.parametrize(
    ("changes", "version", "field"),
    [
        ({"always_reprovision_on_startup": True}, "1.2", "always_reprovision_on_startup"),
        ({"dynamic_reprovisioning": True}, "1.2", "dynamic_reprovisioning"),
        ({"auto_reprovisioning_mode": "Dynamic", "hostname": "h"}, "1.1", "auto_reprovisioning_mode"),
        ({"payload_uri": "file:///p.json", "hostname": "h"}, "1.1", "payload_uri"),
    ],
)
def test_settings_of_the_other_generation_are_refused(
    changes: dict[str, Any], version: str, field: str
) -> None:
    with pytest.raises(InvalidConfigValue, match=field):
        render(reference_config(**changes), version)


def test_rendering_is_deterministic() -> None:
    first, second = render(reference_config(), "1.2"), render(reference_config(), "1.2")
    assert first.content == second.content and first.sha256 == second.sha256
    assert first.sha256 == hashlib.sha256(first.content).hexdigest()
    assert render(reference_config(registration_id="other"), "1.2").sha256 != first.sha256


def test_quotes_and_backslashes_in_values_are_escaped() -> None:
    endpoint = 'https://dps.example/a"b\\c'
    config = reference_config(global_endpoint=endpoint, hostname="h")
    assert (
        tomllib.loads(render(config, "1.2").content.decode())["provisioning"]["global_endpoint"] == endpoint
    )
    assert yaml.safe_load(render(config, "1.1").content)["provisioning"]["global_endpoint"] == endpoint


@pytest.mark.parametrize("version", ["1.2", "1.4", "1.5", " 1.2 "])
def test_versions_1_2_and_later_use_toml(version: str) -> None:
    assert format_for_version(version) is ConfigFormat.AZIOT_TOML


@pytest.mark.parametrize("version", ["", "1.0", "2.0", "1", "latest", "1.2.3"])
def test_unknown_versions_are_refused(version: str) -> None:
    with pytest.raises(InvalidConfigValue, match="edge_version"):
        render(reference_config(), version)


def test_repr_of_config_and_output_hides_the_key() -> None:
    config = reference_config(hostname="h")
    for value in (config, render(config, "1.2"), render(config, "1.1")):
        assert REF_KEY not in repr(value) and REF_KEY[:20] not in str(value)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"global_endpoint": "https://x/\nid_scope = 'evil'"}, "global_endpoint .* control character"),
        ({"global_endpoint": "ftp://x"}, "global_endpoint .* https or http URL"),
        ({"global_endpoint": "https://"}, "global_endpoint"),
        ({"global_endpoint": "https://x y"}, "without spaces"),
        ({"id_scope": "0ab1234C5D6\n"}, "id_scope .* control character"),
        ({"id_scope": "0ab-1234"}, "id_scope .* letters and digits"),
        ({"id_scope": ""}, "id_scope must be a non-empty string"),
        ({"registration_id": "My-Device"}, "registration ID .* 'M'"),
        ({"registration_id": "a\tb"}, "registration_id .*U\\+0009"),
        ({"registration_id": "-a"}, "starts or ends with '-'"),
        ({"hostname": "bad host"}, "hostname .*RFC 1123"),
        ({"hostname": "a\u2028b"}, "hostname .*U\\+2028"),
        ({"auto_reprovisioning_mode": "dynamic"}, "auto_reprovisioning_mode 'dynamic' is not one of"),
        ({"payload_uri": "https://x/p.json"}, "payload_uri .* file URL"),
        ({"always_reprovision_on_startup": "yes"}, "always_reprovision_on_startup must be"),
        ({"device_key": REF_KEY}, "device_key must be a SecretKey"),
    ],
)
def test_invalid_values_are_refused_with_the_field_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfigValue, match=message) as info:
        reference_config(**changes)
    assert REF_KEY not in str(info.value) and REF_KEY[:16] not in str(info.value)


# --- parsing back -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [REF_TOML, REF_TOML_NO_PAD])
def test_parse_reference_apply_files(path: Path) -> None:
    parsed = parse_provisioning(path.read_bytes(), "1.2")
    assert (parsed.global_endpoint, parsed.id_scope, parsed.registration_id) == (
        ENDPOINT,
        "0ab1234C5D6",
        "my-device",
    )
    assert parsed.device_key == KEY
    assert REF_KEY not in repr(parsed)


def test_parse_reference_template_with_the_dps_block_uncommented() -> None:
    parsed = parse_provisioning(dps_symmetric_template_text().encode(), "/etc/aziot/config.toml")
    assert parsed.id_scope == "0ab1234C5D6" and parsed.device_key == KEY


def test_parse_reference_template_as_shipped_says_the_block_is_commented_out() -> None:
    with pytest.raises(ConfigParseError, match=r"no 'provisioning' section .*commented out"):
        parse_provisioning(REF_TEMPLATE.read_bytes(), "1.2")


def test_parse_reference_yaml_with_the_dps_symmetric_key_example_filled_in() -> None:
    text = yaml.safe_dump(dps_symmetric_yaml_reference())
    for placeholder, value in (
        ("<SCOPE_ID>", "0ab1234C5D6"),
        ("<REGISTRATION_ID>", "my-device"),
        ("<SYMMETRIC_KEY>", REF_KEY),
    ):
        text = text.replace(placeholder, value)
    parsed = parse_provisioning(text.encode(), "/etc/iotedge/config.yaml")
    assert (parsed.id_scope, parsed.registration_id, parsed.device_key) == ("0ab1234C5D6", "my-device", KEY)
    assert parsed.global_endpoint == "https://global.azure-devices-provisioning.net"


def test_parse_reference_yaml_example_with_placeholders_names_the_key_field() -> None:
    with pytest.raises(ConfigParseError, match="symmetric_key is not valid base64"):
        parse_provisioning(yaml.safe_dump(dps_symmetric_yaml_reference()).encode(), "1.1")


def test_parse_reference_yaml_as_shipped_names_the_manual_source() -> None:
    with pytest.raises(ConfigParseError, match=r"source is 'manual'.*'dps'"):
        parse_provisioning(REF_YAML.read_bytes(), "1.1")


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_render_then_parse_round_trip(version: str) -> None:
    config = reference_config(hostname="h")
    rendered = render(config, version)
    for hint in (version, rendered.path):
        parsed = parse_provisioning(rendered.content, hint)
        assert parsed.device_key == KEY and parsed.registration_id == "my-device"


_REG_ID = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?\Z")
_SCOPE = st.from_regex(r"\A[0-9A-Za-z]{1,64}\Z")
_KEY = st.binary(min_size=16, max_size=64).map(SecretKey)


@given(registration_id=_REG_ID, id_scope=_SCOPE, key=_KEY, version=st.sampled_from(["1.1", "1.2"]))
def test_render_parse_round_trip_property(
    registration_id: str, id_scope: str, key: SecretKey, version: str
) -> None:
    config = reference_config(
        registration_id=registration_id, id_scope=id_scope, device_key=key, hostname="h"
    )
    rendered = render(config, version)
    parsed = parse_provisioning(rendered.content, version)
    assert (parsed.registration_id, parsed.id_scope, parsed.device_key) == (registration_id, id_scope, key)
    assert render(config, version).sha256 == rendered.sha256


_BROKEN = [
    (b'[provisioning]\nsource = "dps"\nglobal_endpoint = "' + REF_KEY.encode(), "1.2", "not valid TOML"),
    (b"provisioning:\n  source: [\n" + REF_KEY.encode() + b": {", "1.1", "not valid YAML at line"),
    (b"\xff\xfe", "1.2", "not UTF-8"),
    (b"- a list\n", "1.1", "no 'provisioning' section"),
    (b'provisioning = "dps"\n', "1.2", "not a table"),
    (REF_TOML.read_bytes().replace(b'"symmetric_key"\n', b'"x509"\n'), "1.2", "method is 'x509'"),
    (REF_TOML.read_bytes().replace(b"{ value =", b"{ uri ="), "1.2", "given by URI"),
    (REF_TOML.read_bytes().replace(b'"my-device"', b"7"), "1.2", "'registration_id' is missing"),
    (REF_TOML.read_bytes().replace(b"YXpp", b"Y!pp"), "1.2", "symmetric_key is not valid base64"),
    (REF_TOML.read_bytes().replace(b'id_scope = "0ab1234C5D6"\n', b""), "1.2", "'id_scope' is missing"),
    (b"x" * (256 * 1024 + 1), "1.2", "at most"),
]


@pytest.mark.parametrize(("content", "hint", "message"), _BROKEN)
def test_parse_errors_are_clear_and_never_quote_the_key(content: bytes, hint: str, message: str) -> None:
    with pytest.raises(ConfigParseError, match=message) as info:
        parse_provisioning(content, hint)
    assert REF_KEY[:12] not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
