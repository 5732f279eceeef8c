"""Wire-level events and commands of the line, as frozen dataclasses (architecture §2, §5).

Responsible for: the name, version and fields of every message, and strict checking of incoming data
(types, required fields, bounded sizes) before any handler sees it.
Not responsible for: the CloudEvents envelope or topics (pipeline.bus.cloudevents / pipeline.bus.topics).

Events are past tense (something happened); `FlashConfig` is a command addressed to one station.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

MAX_TEXT = 1024
MAX_BLOB = 64 * 1024  # encrypted config envelopes


class EventDataError(ValueError):
    """Incoming event data that does not match its schema; names the field and the problem."""


E = TypeVar("E", bound="Message")


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every event and command: a CloudEvents `type` and strict (de)serialisation."""

    TYPE: ClassVar[str] = ""
    NAME: ClassVar[str] = ""  # short name used as the last topic segment, e.g. "unit.scanned"
    BLOB_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def to_data(self) -> dict[str, Any]:
        """Return the CloudEvents `data` object (None fields left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_data(cls: type[E], data: object) -> E:
        """Build the message from untrusted `data`, raising EventDataError on any mismatch."""
        if not isinstance(data, dict):
            raise EventDataError(f"{cls.NAME}: data must be a JSON object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for name, base, may_be_absent in _field_specs(cls):
            if name not in data or data[name] is None:
                if may_be_absent:
                    continue
                raise EventDataError(f"{cls.NAME}: required field {name!r} is missing")
            values[name] = _check_value(cls, name, base, data[name])
        return cls(**values)


_SPECS: dict[type[Message], tuple[tuple[str, Any, bool], ...]] = {}


def _field_specs(cls: type[Message]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, base type, may be absent) per field; resolved once per class, not once per message."""
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
        specs.append((f.name, base, optional or f.default is not dataclasses.MISSING))
    _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def _check_value(cls: type[Message], name: str, base: Any, value: object) -> object:
    limit = MAX_BLOB if name in cls.BLOB_FIELDS else MAX_TEXT
    if base is bool:
        if not isinstance(value, bool):
            raise EventDataError(f"{cls.NAME}: field {name!r} must be true or false")
    elif base is int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise EventDataError(f"{cls.NAME}: field {name!r} must be a non-negative integer")
    elif base is str:
        if not isinstance(value, str):
            raise EventDataError(f"{cls.NAME}: field {name!r} must be a string")
        if len(value) > limit:
            raise EventDataError(f"{cls.NAME}: field {name!r} is {len(value)} characters; at most {limit}")
    else:  # pragma: no cover - guards against adding a field type the codec does not know
        raise EventDataError(f"{cls.NAME}: field {name!r} has unsupported type {base!r}")
    return value


def _message(name: str, version: int = 1) -> Any:
    def wrap(cls: type[Message]) -> type[Message]:
        cls.NAME = name
        cls.TYPE = f"io.edgeline.{name}.v{version}"
        return cls

    return wrap


@_message("unit.scanned")
@dataclass(frozen=True, slots=True)
class UnitScanned(Message):
    """A station read a device's identity (serial, MAC) on one of its ports."""

    registration_id: str
    serial: str
    mac: str
    line: str
    station: str
    port: str
    product: str = "default"
    batch: str | None = None


@_message("scan.rejected")
@dataclass(frozen=True, slots=True)
class ScanRejected(Message):
    """A station read an identity it refuses (bad serial, bad MAC, garbage): no unit is created."""

    line: str
    station: str
    port: str
    reason: str
    raw_serial: str | None = None
    raw_mac: str | None = None


@_message("unit.keyed")
@dataclass(frozen=True, slots=True)
class UnitKeyed(Message):
    """The unit's device key exists (derived from its group, or generated and sealed)."""

    registration_id: str
    mode: str


@_message("unit.enrolled")
@dataclass(frozen=True, slots=True)
class UnitEnrolled(Message):
    """DPS holds an enrollment that will accept the unit's key."""

    registration_id: str
    mode: str
    enrollment_id: str


@_message("flash.config")
@dataclass(frozen=True, slots=True)
class FlashConfig(Message):
    """Command to one station: write this encrypted IoT Edge config to the device on `port`."""

    BLOB_FIELDS: ClassVar[frozenset[str]] = frozenset({"envelope"})

    registration_id: str
    station: str
    port: str
    config_path: str
    config_sha256: str
    envelope: str


@_message("config.flashed")
@dataclass(frozen=True, slots=True)
class ConfigFlashed(Message):
    """The station wrote the config and the device's read-back SHA-256 matched."""

    registration_id: str
    station: str
    port: str
    config_sha256: str
    edge_check: str | None = None  # edge: summary of the device-side IoT Edge checks, if the driver ran them


@_message("flash.failed")
@dataclass(frozen=True, slots=True)
class FlashFailed(Message):
    """The station could not write or verify the config; `retryable` says whether resending may help."""

    registration_id: str
    station: str
    port: str
    reason: str
    retryable: bool


@_message("unit.assigned")
@dataclass(frozen=True, slots=True)
class UnitAssigned(Message):
    """DPS reports the device assigned to an IoT hub."""

    registration_id: str
    assigned_hub: str
    device_id: str


@_message("unit.failed")
@dataclass(frozen=True, slots=True)
class UnitFailed(Message):
    """A stage failed for the unit; the reason says what an operator can do."""

    registration_id: str
    stage: str
    reason: str
    retryable: bool
    attempt: int


@_message("unit.quarantined")
@dataclass(frozen=True, slots=True)
class UnitQuarantined(Message):
    """The identity conflicts with a known unit (same MAC, other serial, or the reverse): a human decides."""

    registration_id: str
    reason: str
    conflicting_registration_id: str


@_message("unit.refused")
@dataclass(frozen=True, slots=True)
class UnitRefused(Message):
    """Command to one station: the pipeline will not provision the unit it scanned; show why, stop waiting.

    `kind`: `quarantined` (identity conflict, a human decides), `refused` (admission rules: another
    station's unit, an assigned unit not released for rework, a scrapped unit) or `invalid` (the
    identity itself is unacceptable). The station matches it to its port by `registration_id`, or by
    serial and MAC when no registration ID could be built.
    """

    station: str
    port: str
    kind: str
    reason: str
    registration_id: str | None = None
    serial: str | None = None
    mac: str | None = None


@_message("flash.recorded")
@dataclass(frozen=True, slots=True)
class FlashRecorded(Message):
    """Command to one station: the pipeline committed what it made of `config.flashed` event `event_id`.

    The end-to-end acknowledgement (a broker's PUBACK is not one: a broker may lose a message it
    acknowledged): the station keeps re-sending the event, same id, until this arrives. `outcome` is
    `flashed` (recorded), or `ignored: <why>` (stale config, other station, unknown unit).
    """

    registration_id: str
    station: str
    event_id: str
    outcome: str


@_message("unit.notice")
@dataclass(frozen=True, slots=True)
class UnitNotice(Message):
    """Command to one station: news about a unit it handled, for the operator.

    `kind` is `assigned` (DPS assigned the device: now it is really done), `overdue` (flashed long ago,
    DPS has not assigned it: `reason` says what to check), or another kind documented in
    docs/asyncapi.yaml. `state` is the unit's state in the database; `final` says no more news will come.
    """

    registration_id: str
    station: str
    kind: str
    state: str
    reason: str
    final: bool


@_message("station.status")
@dataclass(frozen=True, slots=True)
class StationStatus(Message):
    """Retained presence of a station (also its MQTT last will, with online false)."""

    line: str
    station: str
    online: bool


@_message("unit.online")
@dataclass(frozen=True, slots=True)
class UnitOnline(Message):
    """edge: the hub shows the device's IoT Edge runtime running (optional liveness check)."""

    registration_id: str
    assigned_hub: str
    device_id: str


@_message("unit.online.failed")
@dataclass(frozen=True, slots=True)
class UnitNotOnline(Message):
    """edge: the runtime was not seen running within the timeout (state `not_online`); the reason says why."""

    registration_id: str
    assigned_hub: str
    reason: str


ALL_MESSAGES: tuple[type[Message], ...] = (
    UnitScanned,
    ScanRejected,
    UnitKeyed,
    UnitEnrolled,
    FlashConfig,
    ConfigFlashed,
    FlashFailed,
    UnitAssigned,
    UnitFailed,
    UnitQuarantined,
    UnitRefused,
    StationStatus,
    FlashRecorded,
    UnitNotice,
    UnitOnline,
    UnitNotOnline,
)
BY_TYPE: dict[str, type[Message]] = {m.TYPE: m for m in ALL_MESSAGES}
