"""Module twins of the emulated IoT hub: `$edgeAgent` / `$edgeHub` of IoT Edge devices, and their reports.

Responsible for: the module twin documents IoT Hub returns (`GET /twins/{id}/modules/{mid}`, shapes
`azure-iot-hub`'s `get_module_twin` deserialises), service-side desired-property patches (a deployment:
`PATCH /twins/{id}/modules/{mid}`), and an emulator-only device-side endpoint through which a simulated
IoT Edge runtime reports its state: `PATCH /devices/{id}/modules/{mid}/properties/reported`,
authenticated with a device SAS token (sr `{hub}/devices/{id}`, signed with the device's key, no skn),
as a real device's MQTT connection would be. A real runtime reports over MQTT/AMQP instead.
IoT Hub creates the two runtime module identities with every IoT Edge device; so does the emulator.
Not responsible for: device identities and device twins (hub_registry), service SAS (hub_api).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.emulator.auth import addressed_hosts, first_matching_key, read_token, unauthorized
from pipeline.emulator.http import Request, Response, Router
from pipeline.emulator.hub_registry import NEVER, HubDeviceRecord, HubRegistry, merge_patch
from pipeline.emulator.wire import ApiError, JsonObject, bad_request, utc_timestamp

RUNTIME_MODULES = ("$edgeAgent", "$edgeHub")
REPORTED_SUFFIX = "/properties/reported"
DEVICE = r"(?P<id>[^/]+)"
MODULE = r"(?P<mid>[^/]+)"


@dataclass
class ModuleRecord:
    """One module twin's mutable parts."""

    module_id: str
    desired: JsonObject = field(default_factory=dict)
    reported: JsonObject = field(default_factory=dict)
    desired_version: int = 1
    reported_version: int = 1
    connected: bool = False
    last_activity: str = NEVER

    @property
    def version(self) -> int:
        return self.desired_version + self.reported_version - 1

    def twin_json(self, device: HubDeviceRecord) -> JsonObject:
        """The module Twin document (properties with `$version`, connection state as the hub sees it)."""
        return {
            "deviceId": device.device_id,
            "moduleId": self.module_id,
            "etag": base64.b64encode(str(self.version).encode("ascii")).decode("ascii"),
            "deviceEtag": device.etag,
            "status": device.status,
            "statusUpdateTime": NEVER,
            "connectionState": "Connected" if self.connected else "Disconnected",
            "lastActivityTime": self.last_activity,
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
            "modelId": "",
            "version": self.version,
            "properties": {
                "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
                "reported": {**copy.deepcopy(self.reported), "$version": self.reported_version},
            },
        }


def module_of(device: HubDeviceRecord, module_id: str) -> ModuleRecord | None:
    """The device's module twin; the runtime modules of an IoT Edge device always exist."""
    found = device.modules.get(module_id)
    if found is None and device.iot_edge and module_id in RUNTIME_MODULES:
        found = device.modules[module_id] = ModuleRecord(module_id)
    return found if isinstance(found, ModuleRecord) else None


class HubModulesApi:
    """Module-twin routes of one emulated hub."""

    def __init__(self, registry: HubRegistry, hub_name: str) -> None:
        self.registry = registry
        self.hub_name = hub_name

    def add_routes(self, router: Router) -> None:
        """Register the service routes and the device-side report route."""
        router.add("GET", f"/twins/{DEVICE}/modules/{MODULE}", self._locked(self._get))
        router.add("PATCH", f"/twins/{DEVICE}/modules/{MODULE}", self._locked(self._patch_desired))
        router.add(
            "PATCH", f"/devices/{DEVICE}/modules/{MODULE}{REPORTED_SUFFIX}", self._locked(self._report)
        )

    def _locked(
        self, handler: Callable[[Request, HubDeviceRecord, ModuleRecord], Response]
    ) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            device_id, module_id = unquote(request.params["id"]), unquote(request.params["mid"])
            with self.registry.lock:
                device = self.registry.get(self.hub_name, device_id)
                module = module_of(device, module_id) if device is not None else None
                if device is None and request.path.endswith(REPORTED_SUFFIX):
                    raise unauthorized("no such device for this token")  # as IoT Hub: no existence oracle
                if device is None or module is None:
                    raise ApiError(
                        404, 404010, f"Module {device_id}/{module_id} not found in {self.hub_name}."
                    )
                return handler(request, device, module)

        return handle

    def _get(self, request: Request, device: HubDeviceRecord, module: ModuleRecord) -> Response:
        return Response(200, module.twin_json(device))

    def _patch_desired(self, request: Request, device: HubDeviceRecord, module: ModuleRecord) -> Response:
        desired = (_patch_body(request).get("properties") or {}).get("desired")
        if isinstance(desired, dict):
            merge_patch(module.desired, {k: v for k, v in desired.items() if not k.startswith("$")})
            module.desired_version += 1
        return Response(200, module.twin_json(device))

    def _report(self, request: Request, device: HubDeviceRecord, module: ModuleRecord) -> Response:
        self._check_device_token(request, device)
        if device.status != "enabled":
            raise ApiError(401, 401003, f"Device {device.device_id} is disabled.")
        merge_patch(module.reported, {k: v for k, v in _patch_body(request).items() if not k.startswith("$")})
        module.reported_version += 1
        module.connected = True
        module.last_activity = utc_timestamp()
        return Response(204)

    def _check_device_token(self, request: Request, device: HubDeviceRecord) -> None:
        token = read_token(request)
        if token.skn:
            raise unauthorized("a device token carries no skn")
        hosts = addressed_hosts(request, extra=(self.hub_name,))
        resource = token.resource.lower().rstrip("/")
        device_part = f"/devices/{device.device_id}".lower()
        if not any(
            resource in (f"{h}{device_part}", f"{h}{device_part}/modules/{request.params['mid']}".lower())
            for h in hosts
        ):
            raise unauthorized("sr does not name {hub}/devices/{deviceId} of this request")
        if first_matching_key(token, _device_keys(device)) is None:
            raise unauthorized("signature does not verify with the device's keys")


def _device_keys(device: HubDeviceRecord) -> list[SecretKey]:
    keys = []
    for text in (device.primary_key, device.secondary_key):
        try:
            keys.append(SecretKey.from_base64(text, what="device key"))
        except KeyFormatError:
            continue
    return keys


def _patch_body(request: Request) -> JsonObject:
    body = request.json()
    if not isinstance(body, dict):
        raise bad_request("A twin patch must be a JSON object.")
    return body
