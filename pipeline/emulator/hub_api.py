"""The IoT Hub registry API of one emulated hub: `/devices/{id}` and `/twins/{id}` (api-version 2021-04-12).

Responsible for: the routes `azure-iot-hub`'s IoTHubRegistryManager calls (azure-notes §9), hub service SAS
(sr = host as addressed including the port, or the hub's virtual host name; skn = the hub policy),
and IoT Hub's error body shape (`{"Message": "ErrorCode:...;...", "ExceptionMessage": ...}`).
Not responsible for: the registry data (hub_registry) or TLS and ports (server).
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.domain.keys import SecretKey
from pipeline.emulator.auth import check_service_token
from pipeline.emulator.http import App, Request, Response, Router
from pipeline.emulator.hub_modules import REPORTED_SUFFIX, HubModulesApi
from pipeline.emulator.hub_registry import HubRegistry
from pipeline.emulator.limits import FaultInjector
from pipeline.emulator.wire import ApiError, bad_request, utc_timestamp

HUB_ERROR_NAMES = {
    400: "ArgumentInvalid",
    401: "IotHubUnauthorizedAccess",
    404: "DeviceNotFound",
    405: "MethodNotAllowed",
    409: "DeviceAlreadyExists",
    412: "PreconditionFailed",
    429: "ThrottlingException",
}
DEVICE = r"(?P<id>[^/]+)"


def render_hub_error(error: ApiError) -> Response:
    """IoT Hub's error body, plus the `iothub-errorcode` header clients log."""
    name = HUB_ERROR_NAMES.get(error.status, "ServerError")
    body = {
        "Message": f"ErrorCode:{name};{error.message}",
        "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-TimeStamp:{utc_timestamp()}",
    }
    return Response(error.status, body, {"iothub-errorcode": name})


class HubApi:
    """Routes of one hub, bound to its virtual host name and its shared access policy."""

    def __init__(self, registry: HubRegistry, hub_name: str, policy: str, key: SecretKey) -> None:
        self.registry = registry
        self.hub_name = hub_name
        self.policy = policy
        self.key = key

    def app(self, faults: FaultInjector) -> App:
        router = Router()
        router.add("GET", f"/devices/{DEVICE}", self._get_device)
        router.add("PUT", f"/devices/{DEVICE}", self._put_device)
        router.add("DELETE", f"/devices/{DEVICE}", self._delete_device)
        router.add("GET", f"/twins/{DEVICE}", self._get_twin)
        router.add("PATCH", f"/twins/{DEVICE}", self._patch_twin(replace=False))
        router.add("PUT", f"/twins/{DEVICE}", self._patch_twin(replace=True))
        HubModulesApi(self.registry, self.hub_name).add_routes(router)
        return App(router, render_hub_error, [faults, self._guard])

    def _guard(self, request: Request) -> None:
        if not request.query.get("api-version"):
            raise bad_request("The api-version query parameter is required.")
        if request.path.endswith(REPORTED_SUFFIX):
            return  # device-side route: checks a device token itself (hub_modules)
        check_service_token(request, self.policy, self.key, extra_hosts=(self.hub_name,))

    def _require(self, device_id: str) -> Any:
        record = self.registry.get(self.hub_name, device_id)
        if record is None:
            raise ApiError(404, 404001, f"Device {device_id!r} not found in {self.hub_name}.")
        return record

    def _get_device(self, request: Request) -> Response:
        with self.registry.lock:
            return Response(200, self._require(request.params["id"]).device_json())

    def _put_device(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or body.get("deviceId") != request.params["id"]:
            raise bad_request("deviceId in the body must match the id in the URI.")
        record = self.registry.put_device(self.hub_name, body, request.header("if-match"))
        return Response(200, record.device_json())

    def _delete_device(self, request: Request) -> Response:
        with self.registry.lock:
            record = self._require(request.params["id"])
            if_match = request.header("if-match")
            if if_match and if_match.strip().strip('"') not in ("*", record.etag):
                raise ApiError(412, 412001, "ETag does not match.")
            del self.registry.devices(self.hub_name)[record.device_id]
        return Response(204)

    def _get_twin(self, request: Request) -> Response:
        with self.registry.lock:
            return Response(200, self._require(request.params["id"]).twin_json())

    def _patch_twin(self, replace: bool) -> Any:
        def handle(request: Request) -> Response:
            patch = request.json()
            if not isinstance(patch, dict):
                raise bad_request("A twin patch must be a JSON object.")
            with self.registry.lock:
                record = self._require(request.params["id"])
                if_match = request.header("if-match")
                if if_match and if_match.strip().strip('"') not in ("*", record.etag):
                    raise ApiError(412, 412001, "ETag does not match.")
                record.patch_twin(patch, replace=replace)
                return Response(200, record.twin_json())

        return handle
