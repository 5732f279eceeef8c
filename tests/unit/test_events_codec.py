"""Events and their CloudEvents envelope (architecture §5): round trips, strict decoding of bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.bus.cloudevents import MAX_EVENT_BYTES, SPECVERSION, DecodeError, decode, encode
from pipeline.domain.events import (
    ALL_MESSAGES,
    BY_TYPE,
    MAX_BLOB,
    MAX_TEXT,
    FlashConfig,
    Message,
    StationStatus,
    UnitFailed,
    UnitScanned,
)

T0 = datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=UTC)
EVENT_ID = "6f1c6a3e-3c1b-4d7e-9a53-0b1e2f3a4b5c"
SOURCE = "edgeline/stations/S1"


def _field_base(cls: type[Message], name: str) -> Any:
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def sample(cls: type[Message], *, with_optionals: bool = True) -> Message:
    """An instance with every field set to a distinct, valid value of its type."""
    values: dict[str, Any] = {}
    for index, f in enumerate(dataclasses.fields(cls)):
        base = _field_base(cls, f.name)
        has_default = f.default is not dataclasses.MISSING
        if has_default and not with_optionals:
            continue
        if base is bool:
            values[f.name] = index % 2 == 0
        elif base is int:
            values[f.name] = index + 1
        else:
            values[f.name] = f"{f.name}-value-{index}"
    return cls(**values)


def body_of(message: Message, **changes: Any) -> dict[str, Any]:
    """The JSON object of an encoded event, with attributes changed (None deletes)."""
    _, payload = encode(message, source=SOURCE, event_id=EVENT_ID, time=T0)
    body: dict[str, Any] = json.loads(payload)
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def decode_error(payload: bytes) -> str:
    with pytest.raises(DecodeError) as excinfo:
        decode(payload)
    return str(excinfo.value)


SCANNED = sample(UnitScanned)
MESSAGE_IDS = [cls.NAME for cls in ALL_MESSAGES]


# ---------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
@pytest.mark.parametrize("with_optionals", [True, False])
def test_encode_decode_round_trip_for_every_message(cls: type[Message], with_optionals: bool) -> None:
    message = sample(cls, with_optionals=with_optionals)

    event_id, payload = encode(message, source=SOURCE, event_id=EVENT_ID, time=T0)
    envelope = decode(payload)

    assert event_id == EVENT_ID
    assert envelope.message == message
    assert type(envelope.message) is cls
    assert (envelope.id, envelope.source, envelope.type, envelope.time) == (EVENT_ID, SOURCE, cls.TYPE, T0)
    assert envelope.subject == getattr(message, "registration_id", None)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_wire_form_is_a_structured_cloudevent(cls: type[Message]) -> None:
    body = body_of(sample(cls))

    assert body["specversion"] == SPECVERSION == "1.0"
    assert body["type"] == f"io.edgeline.{cls.NAME}.v1"
    assert body["time"] == "2024-05-01T08:30:15.123456Z"
    assert body["datacontenttype"] == "application/json"
    assert body["data"] == sample(cls).to_data()


def test_every_message_type_is_registered_once() -> None:
    assert set(BY_TYPE.values()) == set(ALL_MESSAGES)
    assert len(BY_TYPE) == len(ALL_MESSAGES)


def test_none_fields_are_left_out_of_data() -> None:
    message = sample(UnitScanned, with_optionals=False)

    assert "batch" not in message.to_data()
    assert message.to_data()["product"] == "default"


def test_encode_generates_a_fresh_uuid_and_current_time_by_default() -> None:
    first, payload = encode(SCANNED, source=SOURCE)
    second, _ = encode(SCANNED, source=SOURCE)
    envelope = decode(payload)

    assert first != second and len(first) == 36
    assert envelope.id == first
    assert abs(datetime.now(UTC) - envelope.time) < timedelta(minutes=1)


def test_explicit_subject_wins_and_messages_without_registration_id_have_none() -> None:
    _, payload = encode(SCANNED, source=SOURCE, subject="other")

    assert decode(payload).subject == "other"
    assert decode(encode(sample(StationStatus), source=SOURCE)[1]).subject is None


def test_encode_refuses_a_naive_time_that_decode_would_reject() -> None:
    # Regression: encode() used to write a naive time, so the event was dead-lettered by every consumer.
    with pytest.raises(ValueError, match="timezone-aware"):
        encode(SCANNED, source=SOURCE, time=datetime(2024, 5, 1, 8, 30))


def test_non_utc_time_is_kept_as_an_aware_instant() -> None:
    cest = timezone(timedelta(hours=2))
    body = body_of(SCANNED, time="2024-05-01T10:30:15+02:00")

    assert decode(raw(body)).time == datetime(2024, 5, 1, 10, 30, 15, tzinfo=cest)


def test_envelope_blob_may_be_larger_than_ordinary_text() -> None:
    envelope = "e" * MAX_BLOB
    base = sample(FlashConfig)
    assert isinstance(base, FlashConfig)
    message = dataclasses.replace(base, envelope=envelope)

    decoded = decode(encode(message, source=SOURCE)[1]).message

    assert isinstance(decoded, FlashConfig) and decoded.envelope == envelope


# ---------------------------------------------------------------------------------------------------------
# Rejections: each names its problem
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "not UTF-8 JSON"),
        (b"not json", "not UTF-8 JSON"),
        (b'{"a":', "not UTF-8 JSON"),
        (b"\xff\xfe{}", "not UTF-8 JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (b"null", "not an object"),
        (b"1" * 5000, "not UTF-8 JSON"),  # regression: int() digit limit raised a bare ValueError
        (b"[" * 100_000, "not UTF-8 JSON"),  # regression: nesting raised RecursionError
    ],
)
def test_decode_rejects_what_is_not_a_json_object(payload: bytes, fragment: str) -> None:
    assert fragment in decode_error(payload)


def test_decode_rejects_oversize_payload_before_parsing() -> None:
    message = decode_error(b" " * (MAX_EVENT_BYTES + 1))

    assert f"{MAX_EVENT_BYTES + 1} bytes" in message and str(MAX_EVENT_BYTES) in message


@pytest.mark.parametrize("version", ["0.3", "1", 1.0, None])
def test_decode_rejects_wrong_specversion(version: object) -> None:
    body = body_of(SCANNED)
    body["specversion"] = version

    assert "specversion must be '1.0'" in decode_error(raw(body))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"type": "io.edgeline.unit.exploded.v1"}, "unknown event type 'io.edgeline.unit.exploded.v1'"),
        ({"type": "io.edgeline.unit.scanned.v2"}, "unknown event type"),
        ({"type": None}, "attribute 'type' is missing"),
        ({"type": 7}, "attribute 'type' is missing or not a non-empty string"),
        ({"id": None}, "attribute 'id' is missing"),
        ({"id": ""}, "attribute 'id' is missing"),
        ({"id": "i" * 129}, "attribute 'id' is longer than 128"),
        ({"source": None}, "attribute 'source' is missing"),
        ({"source": ["S1"]}, "attribute 'source' is missing"),
        ({"source": "s" * 257}, "attribute 'source' is longer than 256"),
        ({"time": None}, "attribute 'time' is missing"),
        ({"time": "yesterday"}, "'yesterday' is not RFC 3339"),
        ({"time": "2024-05-01T08:30:15"}, "has no timezone"),
        ({"time": "2024-05-01"}, "has no timezone"),
        ({"time": 1714552215}, "attribute 'time' is missing or not a non-empty string"),
        ({"subject": 5}, "subject must be a string"),
        ({"data": None}, "data must be a JSON object, got NoneType"),
        ({"data": [1]}, "data must be a JSON object, got list"),
        ({"data": "x"}, "data must be a JSON object, got str"),
    ],
)
def test_decode_rejects_bad_attributes_naming_them(changes: dict[str, Any], fragment: str) -> None:
    body = body_of(SCANNED)
    for name, value in changes.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value

    assert fragment in decode_error(raw(body))


@pytest.mark.parametrize(
    ("cls", "field", "value", "fragment"),
    [
        (UnitScanned, "serial", 7, "field 'serial' must be a string"),
        (UnitScanned, "serial", ["1"], "field 'serial' must be a string"),
        (UnitScanned, "batch", {"x": 1}, "field 'batch' must be a string"),
        (StationStatus, "online", "true", "field 'online' must be true or false"),
        (StationStatus, "online", 1, "field 'online' must be true or false"),
        (UnitFailed, "attempt", "1", "field 'attempt' must be a non-negative integer"),
        (UnitFailed, "attempt", True, "field 'attempt' must be a non-negative integer"),
        (UnitFailed, "attempt", 1.0, "field 'attempt' must be a non-negative integer"),
        (UnitFailed, "attempt", -1, "field 'attempt' must be a non-negative integer"),
        (UnitFailed, "attempt", 2**31, "field 'attempt' must be a non-negative integer"),
    ],
)
def test_decode_rejects_wrong_field_types(
    cls: type[Message], field: str, value: object, fragment: str
) -> None:
    body = body_of(sample(cls))
    body["data"][field] = value

    message = decode_error(raw(body))

    assert message.startswith(f"{cls.NAME}: ")
    assert fragment in message


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_decode_rejects_each_missing_required_field(cls: type[Message]) -> None:
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert required
    for name in required:
        for absent in ("delete", "null"):
            body = body_of(sample(cls))
            if absent == "delete":
                del body["data"][name]
            else:
                body["data"][name] = None
            assert f"required field {name!r} is missing" in decode_error(raw(body))


def test_decode_rejects_too_long_text_fields() -> None:
    body = body_of(SCANNED)
    body["data"]["serial"] = "s" * (MAX_TEXT + 1)

    assert f"field 'serial' is {MAX_TEXT + 1} characters; at most {MAX_TEXT}" in decode_error(raw(body))


def test_text_at_the_limit_is_accepted() -> None:
    body = body_of(SCANNED)
    body["data"]["serial"] = "s" * MAX_TEXT

    assert decode(raw(body)).message.serial == "s" * MAX_TEXT  # type: ignore[attr-defined]


def test_decode_rejects_too_long_blob() -> None:
    body = body_of(sample(FlashConfig))
    body["data"]["envelope"] = "e" * (MAX_BLOB + 1)

    assert f"at most {MAX_BLOB}" in decode_error(raw(body))


def test_unknown_attributes_and_data_fields_are_ignored() -> None:
    body = body_of(SCANNED, traceparent="00-abc-def-01", dataschema="urn:x", comexampleextension={"a": 1})
    body["data"]["firmware"] = "1.2.3"
    body["data"]["nested"] = {"deep": [1, 2]}

    envelope = decode(raw(body))

    assert envelope.message == SCANNED


def test_null_optional_field_takes_its_default() -> None:
    body = body_of(SCANNED)
    body["data"]["product"] = None
    body["data"]["batch"] = None

    message = decode(raw(body)).message

    assert isinstance(message, UnitScanned)
    assert (message.product, message.batch) == ("default", None)


# ---------------------------------------------------------------------------------------------------------
# Properties: a consumer never crashes on a bad message
# ---------------------------------------------------------------------------------------------------------


@given(st.binary(max_size=2048))
def test_decode_of_arbitrary_bytes_raises_only_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.sampled_from(ALL_MESSAGES),
    st.dictionaries(
        st.sampled_from(["specversion", "id", "source", "type", "time", "subject", "data"]),
        json_values,
        max_size=4,
    ),
    st.dictionaries(st.text(max_size=12), json_values, max_size=4),
)
def test_decode_of_mutated_events_raises_only_decode_error(
    cls: type[Message], attribute_changes: dict[str, Any], data_changes: dict[str, Any]
) -> None:
    body = body_of(sample(cls))
    body.update(attribute_changes)
    if isinstance(body.get("data"), dict):
        body["data"].update(data_changes)
    try:
        envelope = decode(raw(body))
    except DecodeError:
        return
    assert type(envelope.message) is BY_TYPE[envelope.type]
    assert envelope.time.tzinfo is not None
