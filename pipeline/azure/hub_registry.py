"""`AzureHubRegistry`: IoT Hub device identities and twin tags through azure-iot-hub.

Responsible for: the `HubRegistry` port on `IoTHubRegistryManager` (one per hub, chosen by the hub host
DPS assigned): reading identities, twin tags and module twins (`$edgeAgent`), enabling/disabling
identities (revocation), and mapping msrest/requests exceptions to `AzureError` at this one boundary.
Not responsible for: creating device identities (DPS does that on assignment) or device-side hub traffic.
The only module importing `azure.iot.hub`; it does so lazily, inside the class, because that import
(msrest, uamqp) costs about a second. The SDK always uses https; a private CA is trusted through
`verify` (or `REQUESTS_CA_BUNDLE`, azure-notes §9).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.azure.ports import AzureError, HubDevice, HubRegistry, ModuleTwin
from pipeline.azure.sas import parse_connection_string

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


def hub_connection_strings(connection_strings: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """Index connection strings by lower-cased hub host.

    A list is keyed by each string's HostName; a mapping names the host DPS reports explicitly
    (`{"hub-1.azure-devices.net": "HostName=127.0.0.1:8443;..."}`), for hubs served on another address.
    """
    if isinstance(connection_strings, Mapping):
        pairs = list(connection_strings.items())
    else:
        pairs = [
            (parse_connection_string(cs, what="IoT hub connection string").host_name, cs)
            for cs in connection_strings
        ]
    for _, cs in pairs:
        parse_connection_string(cs, what="IoT hub connection string")
    return {host.strip().lower(): cs for host, cs in pairs}


def error_from_sdk(exc: Exception, *, what: str) -> AzureError:
    """Map an azure-iot-hub/msrest/requests exception to AzureError (retryable for 429/5xx/no response)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return AzureError(f"{what}: no response from IoT hub ({type(exc).__name__})", retryable=True)
    headers = getattr(response, "headers", None) or {}
    code = headers.get("iothub-errorcode") if hasattr(headers, "get") else None
    return AzureError(
        f"{what}: HTTP {status}" + (f" {code}" if code else ""),
        status=status,
        retryable=status in RETRYABLE or status >= 500,
    )


def _sdk_errors() -> tuple[type[Exception], ...]:
    """The exceptions the SDK raises for a failed call (msrest wraps requests' errors in ClientException)."""
    from msrest.exceptions import ClientException
    from requests import RequestException

    return (ClientException, RequestException)


class AzureHubRegistry(HubRegistry):
    """The `HubRegistry` port on azure-iot-hub's IoTHubRegistryManager, one manager per hub."""

    def __init__(
        self, connection_strings: Iterable[str] | Mapping[str, str], *, verify: bool | str | None = None
    ) -> None:
        self._connection_strings = hub_connection_strings(connection_strings)
        self._verify = verify
        self._managers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AzureHubRegistry(hubs={sorted(self._connection_strings)!r})"

    @property
    def hubs(self) -> list[str]:
        """The hub hosts this registry can reach."""
        return sorted(self._connection_strings)

    def _manager(self, hub_host: str) -> Any:
        host = hub_host.strip().lower()
        if host not in self._connection_strings:
            raise AzureError(f"no connection string for IoT hub {hub_host!r}; configured: {self.hubs}")
        with self._lock:
            if host not in self._managers:
                from azure.iot.hub import IoTHubRegistryManager

                manager = IoTHubRegistryManager.from_connection_string(self._connection_strings[host])
                if self._verify is not None:
                    manager.protocol.config.connection.verify = self._verify
                self._managers[host] = manager
            return self._managers[host]

    def get_device(self, hub_host: str, device_id: str) -> HubDevice | None:
        """Read the device identity and its twin tags; None if the hub has no such device."""
        manager = self._manager(hub_host)
        what = f"IoT hub {hub_host}: device {device_id!r}"
        try:
            device = manager.get_device(device_id)
            twin = manager.get_twin(device_id)
        except _sdk_errors() as exc:
            error = error_from_sdk(exc, what=what)
            if error.status == 404:
                return None
            raise error from None
        capabilities = getattr(device, "capabilities", None)
        return HubDevice(
            device_id=device.device_id,
            iot_edge=bool(getattr(capabilities, "iot_edge", False)),
            status=str(device.status or ""),
            tags=dict(getattr(twin, "tags", None) or {}),
        )

    def update_twin_tags(self, hub_host: str, device_id: str, tags: dict[str, Any]) -> None:
        """Merge `tags` into the device twin with a PATCH guarded by the twin's etag."""
        from azure.iot.hub.models import Twin

        manager = self._manager(hub_host)
        what = f"IoT hub {hub_host}: twin tags of {device_id!r}"
        try:
            twin = manager.get_twin(device_id)
            manager.update_twin(device_id, Twin(tags=dict(tags)), twin.etag)
        except _sdk_errors() as exc:
            raise error_from_sdk(exc, what=what) from None

    def set_device_status(self, hub_host: str, device_id: str, *, enabled: bool, reason: str = "") -> bool:
        """Set the identity's status with GET then PUT of the whole Device, guarded by its etag.

        The fetched Device goes back unchanged but for status and statusReason, rather than through
        `update_device_with_sas`, which rebuilds the Device and would drop capabilities.iotEdge unless
        repeated, and the device scope of an IoT Edge device. A 412 (someone changed the device in
        between) is retried with a fresh GET.
        """
        manager = self._manager(hub_host)
        status = "enabled" if enabled else "disabled"
        what = f"IoT hub {hub_host}: set device {device_id!r} {status}"
        attempts = 3
        while True:
            attempts -= 1
            try:
                device = manager.get_device(device_id)
                device.status = status
                device.status_reason = reason[:128] or None  # IoT Hub keeps at most 128 characters
                manager.protocol.devices.create_or_update_identity(device_id, device, device.etag)
                return True
            except _sdk_errors() as exc:
                error = error_from_sdk(exc, what=what)
                if error.status == 404:
                    return False
                if error.status != 412 or attempts == 0:
                    raise error from None

    def get_module_twin(self, hub_host: str, device_id: str, module_id: str) -> ModuleTwin | None:
        """Read a module twin with `get_module_twin`; None on 404 (device or module unknown to the hub)."""
        manager = self._manager(hub_host)
        try:
            twin = manager.get_module_twin(device_id, module_id)
        except _sdk_errors() as exc:
            error = error_from_sdk(exc, what=f"IoT hub {hub_host}: module twin {device_id}/{module_id}")
            if error.status == 404:
                return None
            raise error from None
        properties = getattr(twin, "properties", None)
        return ModuleTwin(
            device_id=str(twin.device_id or device_id),
            module_id=str(twin.module_id or module_id),
            desired=dict(getattr(properties, "desired", None) or {}),
            reported=dict(getattr(properties, "reported", None) or {}),
            connection_state=str(getattr(twin, "connection_state", None) or "Disconnected"),
        )

    def close(self) -> None:
        """Drop the managers (their AMQP clients disconnect when collected)."""
        with self._lock:
            self._managers.clear()
