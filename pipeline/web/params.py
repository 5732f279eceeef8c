"""Query parameters shared by the API and the dashboard: unit filters, times, and the keyset cursor.

Responsible for: turning query strings into a `UnitFilter` and a cursor, and answering a bad value with a
422 that names the parameter.
Not responsible for: running the query (pipeline.db.audit_api_queries).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request

from pipeline.db.audit_api_queries import UnitFilter
from pipeline.domain.model import UnitState

STATES = tuple(s.value for s in UnitState)


class BadParameter(HTTPException):
    """A query parameter with a value that cannot be used (422, naming it)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(422, f"query parameter {name!r}: {problem}")


def utc(value: datetime | None) -> datetime | None:
    """A naive time is taken as UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UnitQuery:
    """The parsed filters of a unit listing, plus `stuck` (in a transient state past the threshold)."""

    filter: UnitFilter
    stuck: bool


def unit_query(
    request: Request,
    state: Annotated[str | None, Query(description="unit state, e.g. assigned, failed")] = None,
    line: Annotated[str | None, Query(max_length=64)] = None,
    station: Annotated[str | None, Query(max_length=64)] = None,
    port: Annotated[str | None, Query(max_length=256)] = None,
    product: Annotated[str | None, Query(max_length=64)] = None,
    reason: Annotated[str | None, Query(max_length=2000, description="failure reason, exactly")] = None,
    since: Annotated[datetime | None, Query(description="last change at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="last change before (ISO 8601)")] = None,
    q: Annotated[str | None, Query(max_length=128, description="serial, MAC or registration ID")] = None,
    stuck: Annotated[bool, Query(description="only units stuck past the reconcile threshold")] = False,
    verdict: Annotated[Literal["pass", "fail"] | None, Query(description="station verdict")] = None,
    assigned_since: Annotated[datetime | None, Query(description="assigned at or after")] = None,
    assigned_until: Annotated[datetime | None, Query(description="assigned before")] = None,
) -> UnitQuery:
    """FastAPI dependency: the unit filters of a request."""
    if state is not None and state not in STATES:
        raise BadParameter("state", f"{state[:40]!r} is not a unit state; use one of {', '.join(STATES)}")
    since, until = utc(since), utc(until)
    if since and until and since >= until:
        raise BadParameter("until", "must be later than since")
    stuck_before = None
    if stuck:
        stuck_before = datetime.now(UTC) - timedelta(seconds=request.app.state.stuck_seconds)
    unit_filter = UnitFilter(
        state=state or None,
        line=line or None,
        station=station or None,
        port=port,
        product=product or None,
        reason=reason,
        since=since,
        until=until,
        q=q or None,
        stuck_before=stuck_before,
        verdict=verdict,
        assigned_since=utc(assigned_since),
        assigned_until=utc(assigned_until),
    )
    return UnitQuery(unit_filter, stuck)


def encode_cursor(after: tuple[datetime, int]) -> str:
    """The opaque `after` value of the next page."""
    raw = f"{after[0].astimezone(UTC).isoformat()}|{after[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """Parse `after`; a value not made by `encode_cursor` is a 422."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        return utc(datetime.fromisoformat(when)) or datetime.now(UTC), int(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter("after", "not a cursor from a previous page's `next_cursor`") from None
