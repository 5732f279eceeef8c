"""The event contract: schemas, AsyncAPI channels and CHANNELS agree with pipeline.domain.events."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.bus import contract
from pipeline.bus.cloudevents import encode
from pipeline.bus.contract import CHANNELS, Channel, ContractError, validate_published
from pipeline.bus.topics import Topics
from pipeline.domain import events
from pipeline.domain.events import ALL_MESSAGES, Message

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI = REPO / "docs" / "asyncapi.yaml"
SCHEMAS = REPO / "pipeline" / "bus" / "schemas"

SAMPLES: dict[type[Message], Message] = {
    events.UnitScanned: events.UnitScanned("sn-1-mac-a", "SN1", "00:11:22:33:44:55", "L1", "S1", "p0"),
    events.ScanRejected: events.ScanRejected("L1", "S1", "p0", "bad MAC", raw_mac="zz"),
    events.UnitKeyed: events.UnitKeyed("sn-1-mac-a", "group"),
    events.UnitEnrolled: events.UnitEnrolled("sn-1-mac-a", "group", "edgeline-default"),
    events.FlashConfig: events.FlashConfig(
        "sn-1-mac-a", "S1", "p0", "/etc/aziot/config.toml", "ab" * 32, "x" * 5000
    ),
    events.ConfigFlashed: events.ConfigFlashed("sn-1-mac-a", "S1", "p0", "ab" * 32),
    events.FlashFailed: events.FlashFailed("sn-1-mac-a", "S1", "p0", "read-back mismatch", True),
    events.UnitAssigned: events.UnitAssigned("sn-1-mac-a", "hub1.azure-devices.net", "sn-1-mac-a"),
    events.UnitFailed: events.UnitFailed("sn-1-mac-a", "enroll", "DPS 401", False, 3),
    events.UnitQuarantined: events.UnitQuarantined("sn-1-mac-a", "same MAC", "sn-2-mac-a"),
    events.UnitRefused: events.UnitRefused("S1", "p0", "refused", "unit is assigned", "sn-1-mac-a"),
    events.StationStatus: events.StationStatus("L1", "S1", True),
    events.FlashRecorded: events.FlashRecorded(
        "sn-1-mac-a", "S1", "3f1c0f5e-0000-4000-8000-000000000001", "flashed"
    ),
    events.UnitNotice: events.UnitNotice("sn-1-mac-a", "S1", "assigned", "assigned", "DPS assigned it", True),
    events.UnitOnline: events.UnitOnline("sn-1-mac-a", "hub1.azure-devices.net", "sn-1-mac-a"),
    events.UnitNotOnline: events.UnitNotOnline("sn-1-mac-a", "hub1.azure-devices.net", "never connected"),
}


DEFAULT_TOPICS = Topics()


def topic_for(message: Message, topics: Topics = DEFAULT_TOPICS) -> str:
    channel = CHANNELS[type(message)]
    if channel is Channel.STATION_EVENT:
        return topics.station_event("L1", "S1", message.NAME)
    if channel is Channel.STATION_COMMAND:
        return topics.station_command("L1", "S1", message.NAME)
    if channel is Channel.STATION_STATUS:
        return topics.station_status("L1", "S1")
    return topics.unit_event(message.NAME)


def envelope(message: Message) -> bytes:
    return encode(message, source="edgeline/tests")[1]


def load_asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return doc


# (a) nothing undocumented -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
def test_every_message_has_a_schema_a_channel_and_a_sample(cls: type[Message]) -> None:
    assert (SCHEMAS / contract.schema_file(cls.TYPE)).is_file(), f"write pipeline/bus/schemas/{cls.TYPE}.json"
    assert cls in CHANNELS, f"add {cls.__name__} to pipeline.bus.contract.CHANNELS"
    assert cls in SAMPLES


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
def test_schema_lists_exactly_the_dataclass_fields(cls: type[Message]) -> None:
    schema = contract.load_schema(contract.schema_file(cls.TYPE))
    data = schema["allOf"][1]["properties"]["data"]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and type(None) not in typing.get_args(hints[f.name])
    ]
    assert set(data["properties"]) == {f.name for f in fields}
    assert sorted(data["required"]) == sorted(required)
    assert schema["allOf"][1]["properties"]["type"] == {"const": cls.TYPE}


def test_every_schema_file_belongs_to_a_message() -> None:
    known = {contract.schema_file(c.TYPE) for c in ALL_MESSAGES} | {"cloudevent.json", "deadletter.json"}
    assert {p.name for p in SCHEMAS.glob("*.json")} == known


# (b) what we encode validates ------------------------------------------------------------------------------


@pytest.mark.parametrize("message", SAMPLES.values(), ids=lambda m: m.TYPE)
def test_encoded_samples_validate_on_their_channel(message: Message) -> None:
    validate_published(topic_for(message), envelope(message))
    validate_published(topic_for(message, Topics("test-root")), envelope(message), root="test-root")


# (c) what is wrong is rejected -----------------------------------------------------------------------------


def mutate(message: Message, change: Any) -> bytes:
    body = json.loads(envelope(message))
    change(body)
    return json.dumps(body).encode()


SCANNED = SAMPLES[events.UnitScanned]
SCANNED_TOPIC = topic_for(SCANNED)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda b: b["data"].pop("serial"), "'serial' is a required property"),
        (lambda b: b["data"].update(port=7), "data/port"),
        (lambda b: b["data"].update(serial="x" * 1025), "data/serial"),
        (lambda b: b.pop("id"), "'id' is a required property"),
        (lambda b: b.update(specversion="0.3"), "specversion"),
        (lambda b: b.update(time="yesterday"), "time"),
        (lambda b: b.update(data=[]), "data"),
    ],
)
def test_schema_rejects_wrong_types_and_missing_fields(change: Any, expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        validate_published(SCANNED_TOPIC, mutate(SCANNED, change))


def test_wrong_bool_and_int_types_are_rejected() -> None:
    failed = SAMPLES[events.UnitFailed]
    for field, value in (("retryable", "yes"), ("attempt", -1), ("attempt", 1.5)):
        bad = mutate(failed, lambda b, f=field, v=value: b["data"].update({f: v}))
        with pytest.raises(ContractError, match=f"data/{field}"):
            validate_published(topic_for(failed), bad)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (
            "edgeline/v1/units/events/unit.scanned",
            "belongs on edgeline/v1/lines/{line}/stations/{station}/events",
        ),
        ("edgeline/v1/lines/L1/stations/S1/events/unit.keyed", "belongs on"),
        ("edgeline/v1/lines/L1/stations/S2/events/unit.scanned", "data.station is 'S1'"),
        ("other/v1/lines/L1/stations/S1/events/unit.scanned", "belongs on"),
    ],
)
def test_topic_must_be_the_documented_channel(topic: str, expected: str) -> None:
    with pytest.raises(ContractError, match=re.escape(expected)):
        validate_published(topic, envelope(SCANNED))


def test_unknown_type_and_non_json_are_rejected() -> None:
    with pytest.raises(ContractError, match="not a documented"):
        validate_published(SCANNED_TOPIC, mutate(SCANNED, lambda b: b.update(type="io.edgeline.nope.v1")))
    with pytest.raises(ContractError, match="not UTF-8 JSON"):
        validate_published(SCANNED_TOPIC, b"\xff")


def dead_letter(reason: str, payload: bytes = b"\xff garbage") -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "detail": "not UTF-8 JSON",
            "topic": "edgeline/v1/lines/L1/stations/S1/events/x",
            "payload_base64": base64.b64encode(payload).decode(),
            "payload_truncated": False,
        }
    ).encode()


def test_dead_letters_wrap_any_bytes_with_the_reason() -> None:
    validate_published("edgeline/v1/deadletter/invalid", dead_letter("invalid"))


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("edgeline/v1/deadletter/invalid", b"\xff raw bytes"),
        ("edgeline/v1/deadletter/forged", dead_letter("invalid")),
        ("edgeline/v1/deadletter/lost", dead_letter("lost")),
    ],
)
def test_dead_letters_must_be_the_documented_wrapper(topic: str, payload: bytes) -> None:
    with pytest.raises(ContractError):
        validate_published(topic, payload)


# (d) the AsyncAPI document ----------------------------------------------------------------------------------


def test_asyncapi_parses_and_references_existing_schemas() -> None:
    doc = load_asyncapi()
    assert doc["asyncapi"].startswith("2.6")
    refs = [m["payload"]["$ref"] for m in doc["components"]["messages"].values() if "$ref" in m["payload"]]
    assert refs
    for ref in refs:
        assert (ASYNCAPI.parent / ref).resolve().is_file(), ref


def test_asyncapi_channels_match_the_contract() -> None:
    doc = load_asyncapi()
    messages = doc["components"]["messages"]
    documented: dict[str, str] = {}
    for address, channel in doc["channels"].items():
        name = channel["subscribe"]["message"]["$ref"].rsplit("/", 1)[-1]
        documented[messages[name]["name"]] = address
    for cls, kind in CHANNELS.items():
        expected = "edgeline/v1/" + kind.value.replace("{name}", cls.NAME)
        assert documented.get(cls.TYPE) == expected, f"{cls.TYPE}: document {expected} in docs/asyncapi.yaml"
    assert documented["deadletter"] == "edgeline/v1/" + Channel.DEADLETTER.value
