"""The DPS service API (enrollment management), as `/enrollments`, `/enrollmentGroups`, `/registrations`.

Responsible for: the 15 operations of azure-notes §1.2 with the observed behaviour of §1.5-§1.7 (PUT 200 with
keys, GET/query without keys, attestationmechanism with keys, DELETE 204, If-Match 412, paging headers),
plus the per-request guard every service call passes: api-version, service SAS, operations quota.
Not responsible for: bulk operations (bulk), device registration (device_api), record shapes (records).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.emulator import records
from pipeline.emulator.http import Handler, Request, Response, Router
from pipeline.emulator.store import Collection, DpsState, check_if_match
from pipeline.emulator.wire import JsonObject, bad_request

SERVICE_API_VERSIONS = ("2018-04-01", "2019-03-31", "2021-06-01", "2021-10-01")
DEFAULT_PAGE_SIZE = 1000
ID = r"(?P<id>[^/]+)"


def public(record: JsonObject) -> JsonObject:
    """A record as sent on the wire: internal `_` fields removed."""
    return {name: value for name, value in record.items() if not name.startswith("_")}


def check_api_version(request: Request, accepted: tuple[str, ...]) -> None:
    """Every DPS operation requires `api-version` (azure-notes §1.1)."""
    version = request.query.get("api-version")
    if not version:
        raise bad_request("The api-version query parameter is required.")
    if version not in accepted:
        raise bad_request(f"api-version {version[:20]!r} is not supported; use one of {', '.join(accepted)}.")


def page(
    request: Request,
    items: Sequence[JsonObject],
    item_type: str,
    shape: Callable[[JsonObject], JsonObject] = lambda item: item,
) -> Response:
    """Answer a query with one page (each item passed through `shape`) and the headers of azure-notes §1.3."""
    try:
        size = int(request.header("x-ms-max-item-count") or DEFAULT_PAGE_SIZE)
        start = int(request.header("x-ms-continuation") or 0)
    except ValueError:
        raise bad_request("x-ms-max-item-count and x-ms-continuation must be integers.") from None
    if size < 1 or start < 0:
        raise bad_request("x-ms-max-item-count must be positive and x-ms-continuation not negative.")
    headers = {
        "x-ms-item-type": item_type,
        "x-ms-max-item-count": str(size),
        "X-Content-Type-Options": "nosniff",
    }
    if start + size < len(items):
        headers["x-ms-continuation"] = str(start + size)
    return Response(200, [shape(item) for item in items[start : start + size]], headers)


def check_query(request: Request) -> None:
    """Only `SELECT *` is known to be used by clients (azure-notes §1.3)."""
    body = request.json()
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str):
        raise bad_request('Query body must be {"query": "SELECT *"}.')
    if " ".join(query.split()).upper() != "SELECT *":
        raise bad_request("The emulator supports only the query 'SELECT *'.")


class ServiceApi:
    """Route handlers for enrollments, groups and registration states."""

    def __init__(self, state: DpsState, guard: Callable[[Request], None], settle: Callable[[], None]) -> None:
        self.state = state
        self.guard = guard
        self.settle = settle

    def install(self, router: Router) -> None:
        for prefix, collection, id_field, item_type in (
            ("/enrollments", self.state.enrollments, "registrationId", "Enrollment"),
            ("/enrollmentGroups", self.state.groups, "enrollmentGroupId", "EnrollmentGroup"),
        ):
            self._add(router, "POST", f"{prefix}/query", self._query(collection, item_type))
            self._add(router, "PUT", f"{prefix}/{ID}", self._put(collection, id_field))
            self._add(router, "GET", f"{prefix}/{ID}", self._get(collection))
            self._add(router, "DELETE", f"{prefix}/{ID}", self._delete(collection))
            self._add(router, "POST", f"{prefix}/{ID}/attestationmechanism", self._attestation(collection))
        self._add(router, "GET", f"/registrations/{ID}", self._get_registration)
        self._add(router, "DELETE", f"/registrations/{ID}", self._delete(self.state.registrations))
        self._add(router, "POST", f"/registrations/{ID}/query", self._query_registrations)

    def _add(self, router: Router, method: str, pattern: str, handler: Handler) -> None:
        def guarded(request: Request) -> Response:
            self.guard(request)
            return handler(request)

        router.add(method, pattern, guarded)

    def _put(self, collection: Collection, id_field: str) -> Handler:
        def handle(request: Request) -> Response:
            record_id = records.check_id(request.params["id"], id_field)
            body = request.json()
            with self.state.lock:
                existing = collection.get(record_id)
                check_if_match(existing, request.header("if-match"))
                record = records.build_record(body, id_field, record_id, existing)
                collection.put(record_id, record)
            return Response(200, record)

        return handle

    def _get(self, collection: Collection) -> Handler:
        def handle(request: Request) -> Response:
            record_id = request.params["id"]
            self.settle()
            with self.state.lock:
                shown = records.without_keys(collection.require(record_id))
                if collection is self.state.enrollments:
                    registration = self.state.registrations.get(record_id)
                    shown["registrationState"] = (
                        public(registration)
                        if registration
                        else {"registrationId": record_id, "status": "unassigned"}
                    )
            return Response(200, shown)

        return handle

    def _delete(self, collection: Collection) -> Handler:
        def handle(request: Request) -> Response:
            self.settle()
            with self.state.lock:
                collection.delete(request.params["id"], request.header("if-match"))
            return Response(204)

        return handle

    def _attestation(self, collection: Collection) -> Handler:
        def handle(request: Request) -> Response:
            with self.state.lock:
                return Response(200, records.attestation_with_keys(collection.require(request.params["id"])))

        return handle

    def _query(self, collection: Collection, item_type: str) -> Handler:
        def handle(request: Request) -> Response:
            check_query(request)
            with self.state.lock:
                items = [records.without_keys(record) for record in collection.values()]
            return page(request, items, item_type)

        return handle

    def _get_registration(self, request: Request) -> Response:
        self.settle()
        with self.state.lock:
            return Response(200, public(self.state.registrations.require(request.params["id"])))

    def _query_registrations(self, request: Request) -> Response:
        self.settle()
        with self.state.lock:
            self.state.groups.require(request.params["id"])
            members = self.state.registrations.of_group(request.params["id"])
            return page(request, members, "DeviceRegistration", shape=public)  # copies only the page sent
