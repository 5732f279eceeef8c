"""The published event contract: which message goes on which channel, and its JSON Schema.

The same facts are written for people outside Python in `docs/asyncapi.yaml` and the JSON Schemas of
`pipeline/bus/schemas/` (one per message type, plus `cloudevent.json`); tests keep the three in step.

Responsible for: `validate_published`, which checks a topic and payload against the documented
contract (used by end-to-end tests and available to a publisher in debug runs), and `CHANNELS`.
Not responsible for: decoding messages for handlers (pipeline.bus.cloudevents does that, leniently:
unknown attributes are ignored there) or building topics (pipeline.bus.topics).
"""

from __future__ import annotations

import enum
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no types-jsonschema here
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource

from pipeline.bus.cloudevents import MAX_EVENT_BYTES
from pipeline.bus.topics import VERSION
from pipeline.domain import events
from pipeline.domain.events import BY_TYPE, Message

SCHEMA_BASE = "https://schemas.edgeline.io/bus/v1/"
_SEG = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"


class ContractError(ValueError):
    """A published message that does not match the documented topic tree or schema."""


class Channel(enum.Enum):
    """The kinds of channel of the topic tree; the value is the address under `{root}/v1/`."""

    STATION_EVENT = "lines/{line}/stations/{station}/events/{name}"
    STATION_COMMAND = "lines/{line}/stations/{station}/commands/{name}"
    STATION_STATUS = "lines/{line}/stations/{station}/status"
    UNIT_EVENT = "units/events/{name}"
    DEADLETTER = "deadletter/{reason}"

    def pattern(self, root: str) -> re.Pattern[str]:
        """Return a regex matching this channel's topics under `root`, with named groups."""
        body = re.escape(self.value).replace(r"\{", "{").replace(r"\}", "}")
        for name in ("line", "station", "reason"):
            body = body.replace("{" + name + "}", f"(?P<{name}>{_SEG})")
        body = body.replace("{name}", r"(?P<name>[^/#+$]+)")
        return re.compile(f"^{re.escape(root)}/{VERSION}/{body}$")


CHANNELS: dict[type[Message], Channel] = {
    events.UnitScanned: Channel.STATION_EVENT,
    events.ScanRejected: Channel.STATION_EVENT,
    events.ConfigFlashed: Channel.STATION_EVENT,
    events.FlashFailed: Channel.STATION_EVENT,
    events.FlashConfig: Channel.STATION_COMMAND,
    events.UnitRefused: Channel.STATION_COMMAND,
    events.FlashRecorded: Channel.STATION_COMMAND,
    events.UnitNotice: Channel.STATION_COMMAND,
    events.StationStatus: Channel.STATION_STATUS,
    events.UnitKeyed: Channel.UNIT_EVENT,
    events.UnitEnrolled: Channel.UNIT_EVENT,
    events.UnitAssigned: Channel.UNIT_EVENT,
    events.UnitFailed: Channel.UNIT_EVENT,
    events.UnitQuarantined: Channel.UNIT_EVENT,
    events.UnitOnline: Channel.UNIT_EVENT,  # edge
    events.UnitNotOnline: Channel.UNIT_EVENT,  # edge
}


def schema_file(event_type: str) -> str:
    """Return the schema file name of a message type, e.g. `io.edgeline.unit.scanned.v1.json`."""
    return f"{event_type}.json"


def load_schema(file_name: str) -> dict[str, Any]:
    """Return one JSON Schema shipped in `pipeline/bus/schemas/`."""
    text = resources.files("pipeline.bus").joinpath("schemas", file_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(event_type: str) -> Draft202012Validator:
    files = ["cloudevent.json", *(schema_file(t) for t in BY_TYPE)]
    registry: Registry[Any] = Registry().with_resources(
        (SCHEMA_BASE + name, Resource.from_contents(load_schema(name))) for name in files
    )
    return Draft202012Validator(load_schema(schema_file(event_type)), registry=registry)


def validate_published(topic: str, payload: bytes, root: str = "edgeline") -> None:
    """Raise ContractError unless `payload` is a documented message on its documented channel."""
    if Channel.DEADLETTER.pattern(root).match(topic):
        _check_dead_letter(topic, payload)
        return
    body = _parse(topic, payload)
    cls = BY_TYPE.get(str(body.get("type")))
    if cls is None:
        raise ContractError(f"{topic}: type {body.get('type')!r} is not a documented edgeline message type")
    error = best_match(_validator(cls.TYPE).iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(envelope)"
        raise ContractError(f"{topic}: {cls.TYPE} does not match its schema at {where}: {error.message}")
    _check_channel(topic, cls, body["data"], root)


def _parse(topic: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_EVENT_BYTES:
        raise ContractError(f"{topic}: message is {len(payload)} bytes; at most {MAX_EVENT_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{topic}: payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ContractError(f"{topic}: payload is JSON but not an object")
    return body


def _check_channel(topic: str, cls: type[Message], data: dict[str, Any], root: str) -> None:
    channel = CHANNELS.get(cls)
    if channel is None:
        raise ContractError(
            f"{cls.TYPE} has no documented channel (add it to CHANNELS and docs/asyncapi.yaml)"
        )
    expected = f"{root}/{VERSION}/{channel.value.replace('{name}', cls.NAME)}"
    match = channel.pattern(root).match(topic)
    if match is None or match.groupdict().get("name", cls.NAME) != cls.NAME:
        raise ContractError(f"{cls.TYPE} belongs on {expected}, not on {topic}")
    for key in ("line", "station"):
        if key in match.groupdict() and key in data and data[key] != match[key]:
            raise ContractError(f"{topic}: data.{key} is {data[key]!r} but the topic says {match[key]!r}")


def _check_dead_letter(topic: str, payload: bytes) -> None:
    """A dead letter is a JSON wrapper (schemas/deadletter.json) whose reason is the topic's last segment."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"dead letter on {topic} is not JSON: {exc}") from None
    errors = sorted(Draft202012Validator(load_schema("deadletter.json")).iter_errors(body), key=str)
    if errors:
        raise ContractError(
            f"dead letter on {topic} does not match schemas/deadletter.json: {errors[0].message}"
        )
    if topic.rsplit("/", 1)[-1] != body["reason"]:
        raise ContractError(f"dead letter on {topic} says reason {body['reason']!r}")
