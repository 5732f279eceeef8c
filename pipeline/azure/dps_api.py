"""The DPS service REST API plumbing shared by `HttpDpsClient`'s operations.

Responsible for: every service call carrying the cached SAS token and `api-version`, JSON decoding
with AzureError on malformed answers, and the key comparison that makes replays idempotent
(`POST .../attestationmechanism`, the only way to read keys back, azure-notes §1.5).
Not responsible for: retries and pacing (`pipeline.azure.http`) or which calls make up an operation
(`pipeline.azure.dps_service`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import httpx

from pipeline.azure import dps_bodies as bodies
from pipeline.azure.http import AzureHttp
from pipeline.azure.ports import AzureError, EnrollmentConflict, EnrollmentInfo
from pipeline.domain.keys import SecretKey

API_VERSION = "2021-10-01"
ALREADY_EXISTS = 409201  # bulk `create` on an existing enrollment (azure-notes §1.5)

T = TypeVar("T")


class DpsServiceApi:
    """Authenticated, versioned JSON calls to one DPS service endpoint."""

    def __init__(self, http: AzureHttp, token: Callable[[], str], *, api_version: str = API_VERSION) -> None:
        self.http = http
        self._token = token
        self._params = {"api-version": api_version}

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        empty_body: bool = False,
        headers: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        return self.http.send(
            method,
            path,
            what=what,
            auth=self._token,
            params=self._params,
            json_body=json_body,
            content=b"" if empty_body else None,
            headers=headers,
            allow=allow,
        )

    @staticmethod
    def json(response: httpx.Response, *, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise AzureError(f"{what}: response is not JSON", status=response.status_code) from None

    @staticmethod
    def parsed(parse: Callable[[Any], T], body: Any, *, what: str) -> T:
        try:
            return parse(body)
        except bodies.BodyError as exc:
            raise AzureError(f"{what}: unexpected response: {exc}") from None

    def check_keys(self, path: str, primary: SecretKey, secondary: SecretKey, *, what: str) -> None:
        """Fetch an existing enrollment's keys; EnrollmentConflict unless they are ours."""
        response = self.call(
            "POST", f"{path}/attestationmechanism", what=f"{what}: read keys", empty_body=True
        )
        body = self.json(response, what=what)
        keys = self.parsed(bodies.parse_symmetric_keys, body, what=what)
        if keys is None:
            raise EnrollmentConflict(
                f"{what} exists with a non-symmetric-key attestation; delete or rename it before enrolling",
                status=409,
            )
        if not keys.matches(primary, secondary):
            raise EnrollmentConflict(
                f"{what} exists with different keys (DPS primary "
                f"{keys.primary.fingerprint if keys.primary else 'none'}, ours "
                f"{primary.fingerprint}); an operator must decide which is right",
                status=409,
                error_code=ALREADY_EXISTS,
            )

    def read_keys(self, path: str, *, what: str) -> tuple[SecretKey, SecretKey] | None:
        """An enrollment's symmetric keys (attestationmechanism); None on 404 or another attestation."""
        response = self.call(
            "POST", f"{path}/attestationmechanism", what=f"{what}: read keys", empty_body=True, allow=(404,)
        )
        if response.status_code == 404:
            return None
        keys = self.parsed(bodies.parse_symmetric_keys, self.json(response, what=what), what=what)
        if keys is None or keys.primary is None or keys.secondary is None:
            return None
        return keys.primary, keys.secondary

    def get_info(self, path: str, *, id_field: str, what: str) -> EnrollmentInfo | None:
        """GET an enrollment or group; None on 404."""
        response = self.call("GET", path, what=what, allow=(404,))
        if response.status_code == 404:
            return None
        body = self.json(response, what=what)
        return self.parsed(partial(bodies.parse_enrollment_info, id_field=id_field), body, what=what)
