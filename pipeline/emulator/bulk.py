"""Bulk enrollment operations: `POST /enrollments` and `POST /enrollmentGroups` (at most 10 items).

Responsible for: modes create / update / updateIfMatchETag / delete with per-item errors in a 200
answer, as recorded from the real service (azure-notes §1.5, §7). Faithful to the recording, mode
`update` on an existing item reports 409201 "Enrollment already exists." (an upsert must use PUT).
Not responsible for: single-record routes (service_api) or record validation (records).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.emulator import records
from pipeline.emulator.http import Request, Response, Router
from pipeline.emulator.store import Collection, DpsState, check_if_match
from pipeline.emulator.wire import CONFLICT, NOT_FOUND, ApiError, JsonObject, bad_request

MAX_BULK_ITEMS = 10
MODES = ("create", "update", "updateIfMatchETag", "delete")


class BulkApi:
    """Route handlers for the two bulk endpoints (with and without trailing slash, azure-notes §1.2)."""

    def __init__(self, state: DpsState, guard: Callable[[Request], None]) -> None:
        self.state = state
        self.guard = guard

    def install(self, router: Router) -> None:
        for prefix, list_field, id_field, collection in (
            ("/enrollments", "enrollments", "registrationId", self.state.enrollments),
            ("/enrollmentGroups", "enrollmentGroups", "enrollmentGroupId", self.state.groups),
        ):
            router.add("POST", f"{prefix}/?", self._handler(collection, list_field, id_field))

    def _handler(
        self, collection: Collection, list_field: str, id_field: str
    ) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            self.guard(request)
            mode, items = _parse(request.json(), list_field)
            errors: list[JsonObject] = []
            with self.state.lock:
                for item in items:
                    error = _apply(collection, id_field, mode, item)
                    if error is not None:
                        errors.append({id_field: str(item.get(id_field)), **error})
            return Response(200, {"isSuccessful": not errors, "errors": errors})

        return handle


def _parse(body: Any, list_field: str) -> tuple[str, list[JsonObject]]:
    if not isinstance(body, dict) or not isinstance(body.get(list_field), list):
        raise bad_request(f'Bulk body must be {{"{list_field}": [...], "mode": "..."}}.')
    mode = body.get("mode")
    if mode not in MODES:
        raise bad_request(f"mode must be one of {', '.join(MODES)}.")
    items = body[list_field]
    if len(items) > MAX_BULK_ITEMS:
        raise bad_request(f"A bulk operation takes at most {MAX_BULK_ITEMS} items; got {len(items)}.")
    if not all(isinstance(item, dict) for item in items):
        raise bad_request(f"Every item of {list_field} must be an object.")
    return mode, items


def _item_error(code: int, status: str) -> JsonObject:
    return {"errorCode": code, "errorStatus": status}


def _apply(collection: Collection, id_field: str, mode: str, item: JsonObject) -> JsonObject | None:
    """Apply one item; return its per-item error, or None on success."""
    try:
        record_id = records.check_id(item.get(id_field), id_field)
        existing = collection.get(record_id)
        if mode == "delete":
            if existing is None:
                return _item_error(NOT_FOUND, "Enrollment not found.")
            collection.delete(record_id)
            return None
        if mode in ("create", "update") and existing is not None:
            return _item_error(CONFLICT, "Enrollment already exists.")
        if mode == "updateIfMatchETag":
            if existing is None:
                return _item_error(NOT_FOUND, "Enrollment not found.")
            check_if_match(existing, str(item.get("etag") or "") or '"missing etag"')
        collection.put(record_id, records.build_record(item, id_field, record_id, existing))
        return None
    except ApiError as exc:
        return _item_error(exc.error_code, exc.message)
