"""`HttpDpsClient`: the DPS service API (enrollment management) over HTTPS, idempotent by design.

Responsible for: the `DpsClient` port on the DPS REST API 2021-10-01 (azure-notes §1): service SAS from a
connection string, bulk creation (10 per call), idempotent replays (409201 → compare keys through
`attestationmechanism`), ETag-guarded status changes, and paged registration queries.
Not responsible for: pacing/retry mechanics and error mapping (`pipeline.azure.http`), auth and key
comparison (`pipeline.azure.dps_api`), JSON shapes (`pipeline.azure.dps_bodies`), or what the pipeline
does with a conflict (the enroller decides).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from pipeline.azure import dps_bodies as bodies
from pipeline.azure.dps_api import ALREADY_EXISTS, API_VERSION, DpsServiceApi
from pipeline.azure.http import AzureHttp, base_url_for_host, is_retryable_status
from pipeline.azure.pacing import Backoff, Clock, Sleep, TokenBucket
from pipeline.azure.ports import (
    AzureError,
    DpsClient,
    EnrollmentGroupSpec,
    EnrollmentInfo,
    IndividualEnrollmentSpec,
    RegistrationState,
)
from pipeline.azure.sas import parse_connection_string
from pipeline.azure.tokens import CachedSasToken
from pipeline.domain.keys import SecretKey

BULK_LIMIT = 10  # "maximum of 10 enrollments" per bulk operation (azure-notes §1.2, §3)
ETAG_ATTEMPTS = 3
STATUSES = ("enabled", "disabled")

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _q(identifier: str) -> str:
    return quote(identifier, safe="")


class HttpDpsClient(DpsClient):
    """The `DpsClient` port on httpx: one pooled client, paced below the DPS operations quota."""

    def __init__(self, api: DpsServiceApi) -> None:
        self._api = api

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        api_version: str = API_VERSION,
        *,
        operations_per_minute: float = 900,
        burst: int = 10,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        wall_clock: Clock = time.time,
        rng: Callable[[float, float], float] = random.uniform,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> HttpDpsClient:
        """Build a client from `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`.

        A HostName with a scheme (`http://127.0.0.1:PORT`, the emulator) is used as the base URL as-is;
        the SAS `sr` is the HostName exactly as given, as Microsoft's client does (azure-notes §9).
        """
        cs = parse_connection_string(connection_string, what="DPS connection string")
        token = CachedSasToken(cs.host_name, cs.key, policy=cs.key_name, ttl=3600, clock=wall_clock)
        pacer = TokenBucket(operations_per_minute, burst=burst, clock=clock, sleep=sleep)
        http = AzureHttp(
            base_url_for_host(cs.host_name),
            pacer=pacer,
            backoff=backoff,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            sleep=sleep,
            rng=rng,
            verify=verify,
            transport=transport,
        )
        return cls(DpsServiceApi(http, token, api_version=api_version))

    def __repr__(self) -> str:
        return f"HttpDpsClient(base_url={self._api.http.base_url!r})"

    def __enter__(self) -> HttpDpsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.http.close()

    # -- enrollment groups --------------------------------------------------------------------------

    def ensure_enrollment_group(self, spec: EnrollmentGroupSpec) -> None:
        """Create the group, or confirm an existing one has our keys.

        GET first: a DPS PUT without If-Match replaces an existing group (create-or-update, azure-notes §1.6),
        which would silently swap the key of every device already flashed for it.
        """
        path = f"/enrollmentGroups/{_q(spec.group_id)}"
        what = f"enrollment group {spec.group_id!r}"
        if self.get_enrollment_group(spec.group_id) is None:
            self._api.call("PUT", path, what=f"{what}: create", json_body=bodies.enrollment_group_body(spec))
            return
        self._api.check_keys(path, spec.primary_key, spec.secondary_key, what=what)

    def get_enrollment_group(self, group_id: str) -> EnrollmentInfo | None:
        """GET /enrollmentGroups/{id}; None if there is no such group."""
        return self._api.get_info(
            f"/enrollmentGroups/{_q(group_id)}",
            id_field="enrollmentGroupId",
            what=f"enrollment group {group_id!r}",
        )

    def get_enrollment_group_keys(self, group_id: str) -> tuple[SecretKey, SecretKey] | None:
        """POST attestationmechanism: the only call that returns a group's keys (GET strips them)."""
        path = f"/enrollmentGroups/{_q(group_id)}"
        what = f"enrollment group {group_id!r}"
        return self._api.read_keys(path, what=what)

    def replace_enrollment_group_keys(
        self, group_id: str, primary: SecretKey, secondary: SecretKey, *, etag: str
    ) -> None:
        """PUT the group back with new keys and If-Match `etag`; every other field is kept as DPS has it.

        No retry on 412: the caller decided the new keys from what it read at `etag`, so a concurrent
        change (someone rotating in the portal) must reach a human, not be overwritten.
        """
        path = f"/enrollmentGroups/{_q(group_id)}"
        what = f"enrollment group {group_id!r}"
        info = self.get_enrollment_group(group_id)
        if info is None:
            raise AzureError(f"{what}: not found; cannot replace its keys", status=404)
        if info.etag != etag:
            raise AzureError(f"{what}: changed since it was read (etag {info.etag!r})", status=412)
        attestation = bodies.symmetric_key_attestation(primary, secondary)
        body = bodies.resend_body(info.raw, attestation, info.provisioning_status or "enabled")
        response = self._api.call(
            "PUT",
            path,
            what=f"{what}: replace keys",
            json_body=body,
            headers={"If-Match": etag},
            allow=(412,),
        )
        if response.status_code == 412:
            raise AzureError(f"{what}: changed concurrently while replacing its keys", status=412)

    # -- individual enrollments ---------------------------------------------------------------------

    def ensure_individual_enrollments(
        self, specs: list[IndividualEnrollmentSpec]
    ) -> dict[str, AzureError | None]:
        """Create each enrollment by bulk `create` (create-only, unlike PUT); replays are compared by key."""
        results: dict[str, AzureError | None] = {}
        for chunk in chunks(specs, BULK_LIMIT):
            results.update(self._create_chunk(chunk))
        return results

    def _create_chunk(self, chunk: Sequence[IndividualEnrollmentSpec]) -> dict[str, AzureError | None]:
        what = f"bulk create of {len(chunk)} enrollments ({chunk[0].registration_id}..)"
        body = {"enrollments": [bodies.individual_enrollment_body(s) for s in chunk], "mode": "create"}
        try:
            result = self._api.json(
                self._api.call("POST", "/enrollments", what=what, json_body=body), what=what
            )
            errors = self._api.parsed(bodies.parse_bulk_errors, result, what=what)
        except AzureError as exc:
            return {spec.registration_id: exc for spec in chunk}
        by_id = {error.registration_id.lower(): error for error in errors}
        return {
            spec.registration_id: self._resolve(spec, by_id.get(spec.registration_id.lower()))
            for spec in chunk
        }

    def _resolve(
        self, spec: IndividualEnrollmentSpec, error: bodies.BulkItemError | None
    ) -> AzureError | None:
        """Turn one bulk item result into None (created or identical replay) or its error."""
        if error is None:
            return None
        what = f"individual enrollment {spec.registration_id!r}"
        if error.error_code == ALREADY_EXISTS:
            try:
                self._api.check_keys(
                    f"/enrollments/{_q(spec.registration_id)}",
                    spec.primary_key,
                    spec.secondary_key,
                    what=what,
                )
            except AzureError as exc:
                return exc
            return None
        status = error.error_code // 1000 if error.error_code and error.error_code >= 100000 else None
        return AzureError(
            f"{what}: bulk create failed: errorCode {error.error_code}: {error.error_status}",
            status=status,
            error_code=error.error_code,
            retryable=status is not None and is_retryable_status(status),
        )

    def get_individual_enrollment(self, registration_id: str) -> EnrollmentInfo | None:
        """GET /enrollments/{id} (keys are not returned); None if there is no such enrollment."""
        return self._api.get_info(
            f"/enrollments/{_q(registration_id)}",
            id_field="registrationId",
            what=f"individual enrollment {registration_id!r}",
        )

    def set_individual_enrollment_status(self, registration_id: str, status: str) -> None:
        """Enable or disable an enrollment: GET, read keys, PUT with If-Match (retried on 412)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        path = f"/enrollments/{_q(registration_id)}"
        what = f"individual enrollment {registration_id!r}"
        for _ in range(ETAG_ATTEMPTS):
            info = self.get_individual_enrollment(registration_id)
            if info is None:
                raise AzureError(f"{what}: not found; cannot set it {status}", status=404)
            if (info.provisioning_status or "enabled") == status:
                return
            keys = self._api.call(
                "POST", f"{path}/attestationmechanism", what=f"{what}: read keys", empty_body=True
            )
            body = bodies.resend_body(info.raw, self._api.json(keys, what=what), status)
            headers = {"If-Match": info.etag} if info.etag else None
            response = self._api.call(
                "PUT", path, what=f"{what}: set {status}", json_body=body, headers=headers, allow=(412,)
            )
            if response.status_code != 412:
                return
        raise AzureError(
            f"{what}: changed concurrently {ETAG_ATTEMPTS} times while setting it {status}",
            status=412,
            retryable=True,
        )

    def delete_individual_enrollment(self, registration_id: str) -> None:
        """DELETE /enrollments/{id}; an enrollment already gone counts as deleted (idempotent)."""
        self._api.call(
            "DELETE",
            f"/enrollments/{_q(registration_id)}",
            allow=(404,),
            what=f"individual enrollment {registration_id!r}: delete",
        )

    # -- registration states ------------------------------------------------------------------------

    def get_registration_state(self, registration_id: str) -> RegistrationState | None:
        """GET /registrations/{id}; None if the device never registered."""
        what = f"registration state of {registration_id!r}"
        response = self._api.call("GET", f"/registrations/{_q(registration_id)}", what=what, allow=(404,))
        if response.status_code == 404:
            return None
        body = self._api.json(response, what=what)
        return self._api.parsed(bodies.parse_registration_state, body, what=what)

    def query_group_registrations(self, group_id: str, page_size: int = 100) -> list[RegistrationState]:
        """POST /registrations/{groupId}/query page by page, following `x-ms-continuation`."""
        what = f"registration query of group {group_id!r}"
        states: list[RegistrationState] = []
        continuation: str | None = None
        seen: set[str] = set()
        while True:
            headers = {"x-ms-max-item-count": str(page_size)}
            if continuation:
                headers["x-ms-continuation"] = continuation
            response = self._api.call(
                "POST", f"/registrations/{_q(group_id)}/query", what=what, empty_body=True, headers=headers
            )
            states.extend(self._api.parsed(_parse_page, self._api.json(response, what=what), what=what))
            continuation = response.headers.get("x-ms-continuation")
            if not continuation:
                return states
            if continuation in seen:
                raise AzureError(
                    f"{what}: the service repeated a continuation token", status=response.status_code
                )
            seen.add(continuation)


def _parse_page(body: Any) -> list[RegistrationState]:
    if not isinstance(body, list):
        raise bodies.BodyError("query result is not a JSON array")
    return [bodies.parse_registration_state(item) for item in body]
