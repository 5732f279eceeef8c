"""The IoT Hub part's state: per emulated hub, device identities and twins, in memory.

Responsible for: the device and twin documents IoT Hub returns (shapes `azure-iot-hub` deserialises),
creating them when DPS assigns a device (capabilities.iotEdge, initialTwin tags and desired properties,
azure-notes §2.4), moving them on re-provisioning, twin merge-patches with versions and ETags.
Not responsible for: HTTP and SAS (hub_api), deciding assignment (provisioning), module twins
(hub_modules: kept on the device record, so they move and reset with it).
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from pipeline.emulator.store import check_if_match
from pipeline.emulator.wire import ApiError, JsonObject, utc_timestamp

NEVER = "0001-01-01T00:00:00Z"


def _etag(version: int) -> str:
    return base64.b64encode(str(version).encode("ascii")).decode("ascii")


def merge_patch(target: JsonObject, patch: JsonObject) -> None:
    """RFC 7396 merge: nested objects merge, `null` removes (IoT Hub twin PATCH semantics)."""
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        elif isinstance(value, dict) and isinstance(target.get(name), dict):
            merge_patch(target[name], value)
        else:
            target[name] = copy.deepcopy(value)


@dataclass
class HubDeviceRecord:
    """One device identity with its twin's mutable parts."""

    device_id: str
    iot_edge: bool
    primary_key: str
    secondary_key: str
    status: str = "enabled"
    status_reason: str | None = None
    version: int = 1
    tags: JsonObject = field(default_factory=dict)
    desired: JsonObject = field(default_factory=dict)
    desired_version: int = 1
    modules: dict[str, Any] = field(default_factory=dict)  # module id -> hub_modules.ModuleRecord
    generation_id: str = field(default_factory=lambda: str(secrets.randbelow(10**18)))
    created: str = field(default_factory=utc_timestamp)

    @property
    def etag(self) -> str:
        return _etag(self.version)

    def device_json(self) -> JsonObject:
        """The Device document of `GET /devices/{id}` (keys included, as for iothubowner)."""
        return {
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": "Disconnected",
            "status": self.status,
            "statusReason": self.status_reason,
            "connectionStateUpdatedTime": NEVER,
            "statusUpdatedTime": NEVER,
            "lastActivityTime": NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
                "type": "sas",
            },
            "capabilities": {"iotEdge": self.iot_edge},
        }

    def twin_json(self) -> JsonObject:
        """The Twin document of `GET /twins/{id}`."""
        return {
            "deviceId": self.device_id,
            "etag": self.etag,
            "deviceEtag": self.etag,
            "status": self.status,
            "connectionState": "Disconnected",
            "lastActivityTime": NEVER,
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "version": self.version,
            "tags": copy.deepcopy(self.tags),
            "properties": {
                "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
                "reported": {"$version": 1},
            },
            "capabilities": {"iotEdge": self.iot_edge},
        }

    def patch_twin(self, patch: JsonObject, replace: bool = False) -> None:
        """Apply tags and desired properties from a twin patch (or replace them)."""
        tags = patch.get("tags")
        desired = (patch.get("properties") or {}).get("desired")
        if replace:
            self.tags, self.desired = {}, {}
        if isinstance(tags, dict):
            merge_patch(self.tags, tags)
        if isinstance(desired, dict):
            merge_patch(self.desired, {k: v for k, v in desired.items() if not k.startswith("$")})
            self.desired_version += 1
        self.version += 1


class HubRegistry:
    """Devices of every emulated hub, keyed by hub host name then device id. Thread-safe."""

    def __init__(self, hub_names: tuple[str, ...]) -> None:
        self.lock = threading.RLock()
        self._hubs: dict[str, dict[str, HubDeviceRecord]] = {name.lower(): {} for name in hub_names}

    def devices(self, hub: str) -> dict[str, HubDeviceRecord]:
        """The device table of one hub (hold `lock` while using it)."""
        return self._hubs[hub.lower()]

    def get(self, hub: str, device_id: str) -> HubDeviceRecord | None:
        with self.lock:
            return self.devices(hub).get(device_id)

    def provision(self, hub: str, record: HubDeviceRecord, initial_twin: Any) -> None:
        """Create a device DPS assigned (with its initial twin) or refresh an existing one's capabilities."""
        with self.lock:
            existing = self.devices(hub).get(record.device_id)
            if existing is not None:
                existing.iot_edge = record.iot_edge
                existing.version += 1
                return
            if isinstance(initial_twin, dict):
                record.patch_twin(initial_twin)
            self.devices(hub)[record.device_id] = record

    def move(self, old_hub: str, new_hub: str, device_id: str, migrate: bool) -> HubDeviceRecord | None:
        """Remove a device from its old hub; return it if its data should migrate to the new hub."""
        with self.lock:
            old = self.devices(old_hub).pop(device_id, None) if old_hub.lower() in self._hubs else None
            return old if migrate else None

    def put_device(self, hub: str, body: JsonObject, if_match: str | None) -> HubDeviceRecord:
        """Create or update a device from a `PUT /devices/{id}` body (status enabled/disabled included)."""
        with self.lock:
            existing = self.devices(hub).get(body["deviceId"])
            if existing is not None:
                if not if_match:
                    raise ApiError(409, 409001, f"Device {existing.device_id!r} already exists.")
                check_if_match({"etag": existing.etag}, if_match)
            keys = ((body.get("authentication") or {}).get("symmetricKey")) or {}
            record = existing or HubDeviceRecord(
                device_id=body["deviceId"],
                iot_edge=False,
                primary_key=keys.get("primaryKey") or "",
                secondary_key=keys.get("secondaryKey") or "",
            )
            record.iot_edge = bool((body.get("capabilities") or {}).get("iotEdge", record.iot_edge))
            record.status = str(body.get("status") or record.status)
            record.status_reason = body.get("statusReason")  # a PUT replaces the whole identity
            record.primary_key = keys.get("primaryKey") or record.primary_key
            record.secondary_key = keys.get("secondaryKey") or record.secondary_key
            record.version += 1 if existing else 0
            self.devices(hub)[record.device_id] = record
            return record

    def reset(self) -> None:
        with self.lock:
            for devices in self._hubs.values():
                devices.clear()

    def snapshot(self) -> dict[str, list[JsonObject]]:
        """Twins per hub (no keys), for the control API's state dump."""
        with self.lock:
            return {hub: [d.twin_json() for d in devices.values()] for hub, devices in self._hubs.items()}
