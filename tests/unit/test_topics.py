"""The topic tree (architecture §5) and the consumer's topic/sender check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.bus.cloudevents import Envelope, decode, encode
from pipeline.bus.topics import TopicError, Topics, check_segment
from pipeline.domain.events import (
    ConfigFlashed,
    FlashFailed,
    Message,
    ScanRejected,
    StationStatus,
    UnitAssigned,
    UnitScanned,
)
from pipeline.service.consumer import topic_problem

TOPICS = Topics()

# ---------------------------------------------------------------------------------------------------------
# Topic shapes
# ---------------------------------------------------------------------------------------------------------


def test_topic_shapes_under_the_default_root() -> None:
    assert TOPICS.base == "edgeline/v1"
    assert TOPICS.station_prefix("line1", "S1") == "edgeline/v1/lines/line1/stations/S1"
    assert (
        TOPICS.station_event("line1", "S1", "unit.scanned")
        == "edgeline/v1/lines/line1/stations/S1/events/unit.scanned"
    )
    assert (
        TOPICS.station_command("line1", "S1", "flash.config")
        == "edgeline/v1/lines/line1/stations/S1/commands/flash.config"
    )
    assert TOPICS.station_status("line1", "S1") == "edgeline/v1/lines/line1/stations/S1/status"
    assert TOPICS.unit_event("unit.keyed") == "edgeline/v1/units/events/unit.keyed"
    assert TOPICS.deadletter("invalid") == "edgeline/v1/deadletter/invalid"


def test_subscription_filters() -> None:
    assert TOPICS.all_station_events() == "edgeline/v1/lines/+/stations/+/events/#"
    assert TOPICS.all_unit_events() == "edgeline/v1/units/events/#"
    assert TOPICS.commands_for("line1", "S1") == "edgeline/v1/lines/line1/stations/S1/commands/#"


def test_custom_root_isolates_everything() -> None:
    topics = Topics(root="test-abc")

    for topic in (
        topics.station_event("l", "s", "unit.scanned"),
        topics.station_command("l", "s", "flash.config"),
        topics.station_status("l", "s"),
        topics.unit_event("unit.keyed"),
        topics.deadletter("invalid"),
        topics.all_station_events(),
        topics.all_unit_events(),
        topics.commands_for("l", "s"),
    ):
        assert topic.startswith("test-abc/v1/")


# ---------------------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["line1", "S1", "L-2", "st_3", "a.b", "9", "A" * 64])
def test_check_segment_accepts_safe_names(value: str) -> None:
    assert check_segment("station", value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "+",
        "#",
        "a+b",
        "a#",
        "a/b",
        "$SYS",
        "a$",
        "line 1",
        " line1",
        "line1\n",  # regression: '$' in the pattern let a trailing newline through
        "line1\x00",
        "-line",
        ".line",
        "_line",
        "A" * 65,
        "l\u00efne",
    ],
)
def test_check_segment_rejects_unsafe_names_naming_the_kind(value: str) -> None:
    with pytest.raises(TopicError) as excinfo:
        check_segment("line", value)

    assert str(excinfo.value).startswith(f"line name {value!r} is not usable in MQTT topics")


@pytest.mark.parametrize(("line", "station"), [("line/2", "S1"), ("line1", "S+"), ("#", "S1"), ("line1", "")])
def test_topic_builders_refuse_unsafe_line_and_station(line: str, station: str) -> None:
    for build in (TOPICS.station_prefix, TOPICS.station_status, TOPICS.commands_for):
        with pytest.raises(TopicError):
            build(line, station)
    with pytest.raises(TopicError):
        TOPICS.station_event(line, station, "unit.scanned")


@given(st.text(max_size=80))
def test_accepted_segments_never_contain_mqtt_specials(value: str) -> None:
    try:
        check_segment("station", value)
    except TopicError:
        return
    assert value and len(value) <= 64
    assert not set(value) & set("+#/$ \n\r\t\x00")
    assert value.isascii()


# ---------------------------------------------------------------------------------------------------------
# topic_problem: a message must arrive on its own topic, from the station it names
# ---------------------------------------------------------------------------------------------------------


def envelope_of(message: Message) -> Envelope:
    return decode(encode(message, source="edgeline/stations/S1")[1])


SCANNED = UnitScanned(
    registration_id="sn-1-mac-02-00-00-00-00-01",
    serial="1",
    mac="02:00:00:00:00:01",
    line="line1",
    station="S1",
    port="/dev/ttyUSB0",
)
FLASHED = ConfigFlashed(registration_id="sn-1", station="S1", port="COM3", config_sha256="0" * 64)
FAILED = FlashFailed(registration_id="sn-1", station="S1", port="COM3", reason="timeout", retryable=True)
REJECTED = ScanRejected(line="line1", station="S1", port="COM3", reason="bad MAC")
ASSIGNED = UnitAssigned(registration_id="sn-1", assigned_hub="hub.azure-devices.net", device_id="sn-1")


@pytest.mark.parametrize("message", [SCANNED, FLASHED, FAILED, REJECTED], ids=lambda m: m.NAME)
@pytest.mark.parametrize("topics", [TOPICS, Topics(root="test-1a2b")], ids=["default", "custom-root"])
def test_station_message_on_its_own_station_topic_is_accepted(message: Message, topics: Topics) -> None:
    topic = topics.station_event("line1", "S1", message.NAME)

    assert topic_problem(topics, topic, envelope_of(message)) is None


def test_pipeline_event_on_unit_topic_is_accepted() -> None:
    assert topic_problem(TOPICS, TOPICS.unit_event("unit.assigned"), envelope_of(ASSIGNED)) is None


def test_topic_must_name_the_message_type() -> None:
    topic = TOPICS.station_event("line1", "S1", "config.flashed")

    problem = topic_problem(TOPICS, topic, envelope_of(SCANNED))

    assert problem == f"topic {topic} carries a io.edgeline.unit.scanned.v1 event"


def test_station_cannot_speak_for_another_station() -> None:
    topic = TOPICS.station_event("line1", "S2", "unit.scanned")

    assert topic_problem(TOPICS, topic, envelope_of(SCANNED)) == (
        "station S2 published an event in the name of station S1"
    )


@pytest.mark.parametrize("message", [SCANNED, REJECTED], ids=lambda m: m.NAME)
def test_station_cannot_speak_for_another_line(message: Message) -> None:
    # Regression: only the station segment was compared; ACLs confine a station by line too.
    topic = TOPICS.station_event("line2", "S1", message.NAME)

    assert topic_problem(TOPICS, topic, envelope_of(message)) == (
        "station S1 of line line2 published an event for line line1"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "edgeline/v1/units/events/unit.scanned",  # a station message on the pipeline's topic
        "edgeline/v1/lines/line1/stations/S1/commands/unit.scanned",  # not under events/
        "edgeline/v1/lines/line1/stations/S1/events/extra/unit.scanned",
        "other/v1/lines/line1/stations/S1/events/unit.scanned",  # another root
        "edgeline/v2/lines/line1/stations/S1/events/unit.scanned",
        "edgeline/v1/linez/line1/stations/S1/events/unit.scanned",
        "edgeline/v1/lines/line1/statione/S1/events/unit.scanned",
        "unit.scanned",
    ],
)
def test_station_message_must_come_from_a_station_event_topic(topic: str) -> None:
    problem = topic_problem(TOPICS, topic, envelope_of(SCANNED))

    assert problem == f"io.edgeline.unit.scanned.v1 must come from a station topic, not {topic}"


def test_station_status_is_not_checked_as_a_station_event() -> None:
    status = StationStatus(line="line1", station="S1", online=True)

    assert topic_problem(TOPICS, TOPICS.unit_event("station.status"), envelope_of(status)) is None
