"""Wire-format details shared by the emulator's APIs: timestamps, ETags, ids and error bodies.

Responsible for: the exact shapes DPS puts on the wire (azure-notes §1.5, §1.7, §2.1): 7-digit fractional UTC
timestamps, ETags that are base64 of a quoted Cosmos-style id, operation ids `<digit>.<16 hex>.<uuid>`,
and `ProvisioningServiceErrorDetails` bodies raised as `ApiError`.
Not responsible for: routing or HTTP framing (see `pipeline.emulator.http`).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]

# Six-digit DPS error codes (azure-notes §1.7). 412xxx/429xxx follow the observed pattern but are UNVERIFIED.
BAD_REQUEST = 400004
NO_HUB = 400208
UNAUTHORIZED = 401002
NOT_FOUND = 404201
CONFLICT = 409201
PRECONDITION_FAILED = 412002
THROTTLED = 429001
INTERNAL = 500000


class ApiError(Exception):
    """An error answer: HTTP status, six-digit DPS code, a message safe to show, extra headers."""

    def __init__(
        self, status: int, error_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers or {}


def utc_timestamp(moment: datetime | None = None) -> str:
    """Render a UTC time as DPS does: `2023-04-20T20:37:04.8033329Z` (7 fractional digits)."""
    when = moment or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0Z"


def new_etag() -> str:
    """Return a fresh ETag: base64 of a double-quoted Cosmos-style id (azure-notes §1.5)."""
    raw = secrets.token_hex(16)
    cosmos_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    return base64.b64encode(f'"{cosmos_id}"'.encode("ascii")).decode("ascii")


def unquote_etag(value: str) -> str:
    """Strip one pair of surrounding double quotes, as C# clients add them and Python ones do not."""
    text = value.strip()
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def new_operation_id() -> str:
    """Return an operation id shaped like the real ones: `5.316aac5bdc130deb.b1e02da8-...`."""
    return f"{secrets.randbelow(10)}.{secrets.token_hex(8)}.{uuid.uuid4()}"


def error_body(error_code: int, message: str) -> JsonObject:
    """Build a ProvisioningServiceErrorDetails body."""
    return {
        "errorCode": error_code,
        "trackingId": str(uuid.uuid4()),
        "message": message,
        "timestampUtc": utc_timestamp(),
    }


def not_found(what: str) -> ApiError:
    """404 for a missing resource, naming which one (ids are not secret)."""
    return ApiError(404, NOT_FOUND, f"{what} not found.")


def bad_request(message: str) -> ApiError:
    """400 for an invalid request body or parameter."""
    return ApiError(400, BAD_REQUEST, message)


def drop_nulls(record: JsonObject, keep: tuple[str, ...] = ("provisioningStatus",)) -> JsonObject:
    """Omit top-level null fields, as DPS does, except those in `keep` (azure-notes §1.5)."""
    return {name: value for name, value in record.items() if value is not None or name in keep}
