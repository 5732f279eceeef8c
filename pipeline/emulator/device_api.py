"""The DPS device registration API: register, poll the operation, look up the registration status.

Responsible for: `PUT /{idScope}/registrations/{id}/register` (always 202 + operationId, `Retry-After`,
`Location`), `GET .../operations/{operationId}` (202 assigning with registrationState.registrationId,
or 200 final), `POST /{idScope}/registrations/{id}` (status lookup), device SAS as azure-notes §2.2, and the
registrations-per-minute and polls-per-device quotas (§3). Shapes follow azure-notes §2.1 and §2.6.
Not responsible for: which enrollment or hub (provisioning) and framing (http).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pipeline.emulator.auth import check_device_token_scope, read_token, unauthorized
from pipeline.emulator.http import Request, Response, Router
from pipeline.emulator.limits import RateLimiter
from pipeline.emulator.provisioning import Provisioner
from pipeline.emulator.service_api import check_api_version, public
from pipeline.emulator.store import DpsState, Operation
from pipeline.emulator.wire import ApiError, bad_request, not_found

DEVICE_API_VERSIONS = ("2018-11-01", "2019-03-31", "2021-06-01", "2021-10-01")
RETRY_AFTER_SECONDS = "3"  # observed value (azure-notes §2.1)
BASE = r"/(?P<scope>[^/]+)/registrations/(?P<rid>[^/]+)"


class DeviceApi:
    """Route handlers for devices registering with the emulated DPS."""

    def __init__(
        self,
        state: DpsState,
        provisioner: Provisioner,
        id_scope: str,
        registrations: RateLimiter,
        polls: RateLimiter,
        endpoint: Callable[[], str],
    ) -> None:
        self.state = state
        self.provisioner = provisioner
        self.id_scope = id_scope
        self.registrations = registrations
        self.polls = polls
        self.endpoint = endpoint

    def install(self, router: Router) -> None:
        router.add("PUT", f"{BASE}/register", self._register)
        router.add("GET", f"{BASE}/operations/(?P<op>[^/]+)", self._poll)
        router.add("POST", BASE, self._status)

    def _check(self, request: Request) -> str:
        """api-version, scope and device token; return the registration id."""
        check_api_version(request, DEVICE_API_VERSIONS)
        scope, registration_id = request.params["scope"], request.params["rid"]
        if scope.lower() != self.id_scope.lower():
            raise unauthorized("unknown ID scope")
        token = read_token(request)
        check_device_token_scope(token, scope, registration_id)
        return registration_id

    def _register(self, request: Request) -> Response:
        self.registrations.take()
        registration_id = self._check(request)
        body = request.json()
        if not isinstance(body, dict) or body.get("registrationId") != registration_id:
            raise bad_request("registrationId in the body must match the registration id in the URI.")
        attested = self.provisioner.attest(read_token(request), registration_id)
        operation = self.provisioner.register(registration_id, attested)
        location = f"{self.endpoint()}{request.path}"
        headers = {
            "Retry-After": RETRY_AFTER_SECONDS,
            "Location": location,
            "x-ms-request-id": str(uuid.uuid4()),
        }
        return Response(202, {"operationId": operation.operation_id, "status": "assigning"}, headers)

    def _poll(self, request: Request) -> Response:
        registration_id = self._check(request)
        self.polls.take(registration_id.lower())
        self.provisioner.attest(read_token(request), registration_id)
        self.provisioner.settle()
        with self.state.lock:
            operation = self.state.operations.get(request.params["op"])
            if operation is None or operation.registration_id.lower() != registration_id.lower():
                raise ApiError(404, 404203, "Operation not found for this registration.")
            return _operation_response(operation)

    def _status(self, request: Request) -> Response:
        registration_id = self._check(request)
        self.provisioner.attest(read_token(request), registration_id)
        self.provisioner.settle()
        with self.state.lock:
            record = self.state.registrations.get(registration_id)
            if record is None:
                raise not_found(f"Registration {registration_id!r}")
            return Response(200, public(record), {"x-ms-request-id": str(uuid.uuid4())})


def _operation_response(operation: Operation) -> Response:
    request_id = {"x-ms-request-id": str(uuid.uuid4())}
    if not operation.settled:
        body = {
            "operationId": operation.operation_id,
            "status": "assigning",
            "registrationState": {"registrationId": operation.registration_id, "status": "assigning"},
        }
        return Response(202, body, {"Retry-After": RETRY_AFTER_SECONDS, **request_id})
    outcome = public(operation.outcome)
    body = {"operationId": operation.operation_id, "status": outcome["status"], "registrationState": outcome}
    return Response(200, body, request_id)
