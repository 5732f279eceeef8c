"""The emulator's in-memory state: enrollments, groups, registration records and operations.

Responsible for: keeping records (as wire-shaped dicts, keys included) keyed case-insensitively as DPS
ids are (azure-notes §2.4), ETag preconditions (If-Match, §1.6), paging order, one lock for it all,
and a JSON snapshot for `--state-file` and the control API.
Not responsible for: validating request bodies (records), authentication (auth), HTTP (http).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
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


GROUP_MARKER = "_enrollmentGroupId"  # internal: the group a registration came through; never sent


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


class Registrations(Collection):
    """Registration records, plus each enrollment group's registration ids in query order.

    A page of one group's registrations then costs the page, not a scan of every registration of every
    group (which made paging a group of n registrations cost n²/page in the emulator).
    """

    def __init__(self) -> None:
        super().__init__("Registration")
        self._by_group: dict[str, list[str]] = {}

    def put(self, record_id: str, record: JsonObject) -> None:
        key, old = record_id.lower(), self.get(record_id)
        if old is None or _group_of(old) != _group_of(record):
            if old is not None:
                self._leave(key, old)
            self._join(key, record)
        super().put(record_id, record)

    def delete(self, record_id: str, if_match: str | None = None) -> None:
        old = self.require(record_id)
        super().delete(record_id, if_match)
        self._leave(record_id.lower(), old)

    def clear(self) -> None:
        super().clear()
        self._by_group.clear()

    def restore(self, records: list[JsonObject], id_field: str) -> None:
        super().restore(records, id_field)
        self._by_group = {}
        for key, record in self._items.items():
            self._join(key, record)

    def of_group(self, group_id: str) -> Sequence[JsonObject]:
        """The group's registrations in query order, as a view: slicing it copies only the slice."""
        return _Members(self._by_group.get(group_id.lower(), []), self._items)

    def _join(self, key: str, record: JsonObject) -> None:
        if group := _group_of(record):
            self._by_group.setdefault(group, []).append(key)

    def _leave(self, key: str, record: JsonObject) -> None:
        members = self._by_group.get(_group_of(record))
        if members is not None and key in members:
            members.remove(key)  # O(group): deletes and group moves are rare


def _group_of(record: JsonObject) -> str:
    return str(record.get(GROUP_MARKER, "")).lower()


class _Members(Sequence[JsonObject]):
    """Records by id list (read under the state lock)."""

    def __init__(self, keys: list[str], items: dict[str, JsonObject]) -> None:
        self._keys, self._items = keys, items

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._items[key] for key in self._keys[index]]
        return self._items[self._keys[index]]


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
    registrations: Registrations = field(default_factory=Registrations)
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
