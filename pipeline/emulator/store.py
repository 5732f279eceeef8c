"""The emulator's in-memory state: enrollments, groups, registration records and operations.

Responsible for: keeping records (as wire-shaped dicts, keys included) keyed case-insensitively as DPS
ids are (azure-notes §2.4), ETag preconditions (If-Match, §1.6), paging order, one lock for it all,
and a JSON snapshot for `--state-file` and the control API.
Not responsible for: validating request bodies (records), authentication (auth), HTTP (http).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.emulator.wire import PRECONDITION_FAILED, ApiError, JsonObject, not_found, unquote_etag


def check_if_match(current: JsonObject | None, if_match: str | None) -> None:
    """Raise 412 if an If-Match value is given and differs from the record's ETag (`*` matches any)."""
    if if_match is None or not if_match.strip():
        return
    wanted = unquote_etag(if_match)
    if wanted == "*" and current is not None:
        return
    if current is None or wanted != current.get("etag"):
        raise ApiError(
            412,
            PRECONDITION_FAILED,
            "The ETag in the request does not match the ETag of the existing resource, as per RFC7232.",
        )


class Collection:
    """Records by case-insensitive id, in insertion order (which is also the query order)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, JsonObject] = {}

    def get(self, record_id: str) -> JsonObject | None:
        return self._items.get(record_id.lower())

    def require(self, record_id: str) -> JsonObject:
        record = self.get(record_id)
        if record is None:
            raise not_found(f"{self.what} {record_id!r}")
        return record

    def put(self, record_id: str, record: JsonObject) -> None:
        self._items[record_id.lower()] = record

    def delete(self, record_id: str, if_match: str | None = None) -> None:
        """Remove a record; 404 if absent, 412 if If-Match does not match."""
        current = self.require(record_id)
        check_if_match(current, if_match)
        del self._items[record_id.lower()]

    def values(self) -> list[JsonObject]:
        return list(self._items.values())

    def clear(self) -> None:
        self._items.clear()

    def snapshot(self) -> list[JsonObject]:
        return copy.deepcopy(self.values())

    def restore(self, records: list[JsonObject], id_field: str) -> None:
        self._items = {str(r[id_field]).lower(): r for r in copy.deepcopy(records)}


@dataclass(slots=True)
class Operation:
    """One device registration in flight: the outcome is decided at register time, shown after `ready_at`."""

    operation_id: str
    registration_id: str
    ready_at: float
    outcome: JsonObject  # the final registrationState
    on_settle: Callable[[], None] | None = None  # e.g. create the device in its hub
    settled: bool = False


@dataclass
class DpsState:
    """Everything the DPS part remembers. Hold `lock` for any read-modify-write."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    enrollments: Collection = field(default_factory=lambda: Collection("Enrollment"))
    groups: Collection = field(default_factory=lambda: Collection("Enrollment group"))
    registrations: Collection = field(default_factory=lambda: Collection("Registration"))
    operations: dict[str, Operation] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything (control API `/_emulator/reset`)."""
        with self.lock:
            self.enrollments.clear()
            self.groups.clear()
            self.registrations.clear()
            self.operations.clear()

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of all records, keys included (callers redact if needed)."""
        with self.lock:
            return {
                "enrollments": self.enrollments.snapshot(),
                "enrollmentGroups": self.groups.snapshot(),
                "registrations": self.registrations.snapshot(),
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Load records saved by `snapshot` (operations in flight are not persisted)."""
        with self.lock:
            self.enrollments.restore(data.get("enrollments", []), "registrationId")
            self.groups.restore(data.get("enrollmentGroups", []), "enrollmentGroupId")
            self.registrations.restore(data.get("registrations", []), "registrationId")
            self.operations.clear()
