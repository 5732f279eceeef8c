"""CloudEvents 1.0 structured JSON envelopes around edgeline messages (architecture §5).

Responsible for: encoding a Message into a CloudEvent and decoding untrusted bytes back, with every
failure a `DecodeError` that says what was wrong (the consumer sends it to the dead-letter topic).
Not responsible for: topics or transport.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.domain.events import BY_TYPE, EventDataError, Message

MAX_EVENT_BYTES = 128 * 1024
SPECVERSION = "1.0"


class DecodeError(ValueError):
    """Bytes that are not a valid edgeline CloudEvent; the message says why."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded CloudEvent: the idempotency `id`, its source and time, and the typed message."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str | None
    message: Message


def new_event_id() -> str:
    """Return a fresh event id (UUID4), the idempotency key of a message."""
    return str(uuid.uuid4())


def encode(
    message: Message,
    *,
    source: str,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> tuple[str, bytes]:
    """Return (event id, JSON bytes) of `message` as a structured CloudEvent."""
    eid = event_id or new_event_id()
    if time is not None and time.utcoffset() is None:  # decode() would dead-letter it downstream
        raise ValueError("CloudEvent time must be timezone-aware")
    body: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": eid,
        "source": source,
        "type": message.TYPE,
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": message.to_data(),
    }
    if subject is None:
        subject = getattr(message, "registration_id", None)
    if subject is not None:
        body["subject"] = subject
    return eid, json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _require_str(body: dict[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"CloudEvent attribute {name!r} is missing or not a non-empty string")
    if len(value) > limit:
        raise DecodeError(f"CloudEvent attribute {name!r} is longer than {limit} characters")
    return value


def decode(payload: bytes) -> Envelope:
    """Parse untrusted bytes into an Envelope; unknown attributes are ignored, unknown types rejected."""
    if len(payload) > MAX_EVENT_BYTES:
        raise DecodeError(f"message is {len(payload)} bytes; at most {MAX_EVENT_BYTES} accepted")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also: ints over 4300 digits, deeply nested arrays
        raise DecodeError(f"message is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DecodeError("message is JSON but not an object")
    if body.get("specversion") != SPECVERSION:
        raise DecodeError(f"specversion must be {SPECVERSION!r}, got {body.get('specversion')!r}")
    event_type = _require_str(body, "type")
    cls = BY_TYPE.get(event_type)
    if cls is None:
        raise DecodeError(f"unknown event type {event_type!r}")
    time_text = _require_str(body, "time", 64)
    try:
        time = datetime.fromisoformat(time_text.replace("Z", "+00:00"))
    except ValueError:
        raise DecodeError(f"time {time_text!r} is not RFC 3339") from None
    if time.tzinfo is None:
        raise DecodeError(f"time {time_text!r} has no timezone")
    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise DecodeError("subject must be a string")
    try:
        message = cls.from_data(body.get("data"))
    except EventDataError as exc:
        raise DecodeError(str(exc)) from None
    return Envelope(
        id=_require_str(body, "id", 128),
        source=_require_str(body, "source"),
        type=event_type,
        time=time,
        subject=subject,
        message=message,
    )
