"""`HttpModuleReporter`: a device-side module twin report to the emulator's IoT hub, over HTTPS.

Responsible for: what a simulated IoT Edge runtime sends after it started: a reported-properties patch
for `$edgeAgent` / `$edgeHub` on the emulator's device-side endpoint
(`PATCH /devices/{id}/modules/{mid}/properties/reported`), signed with a device SAS token
(sr `{hub}/devices/{deviceId}`, the device's key, no skn), which is how a device authenticates to IoT Hub.
Not responsible for: real devices: the real runtime reports over MQTT/AMQP, and Azure IoT Hub has no such
HTTP route. This adapter exists for the emulator and simulated devices only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from pipeline.azure.ports import AzureError
from pipeline.azure.sas import generate_token
from pipeline.domain.keys import SecretKey

HUB_API_VERSION = "2021-04-12"


class HttpModuleReporter:
    """Send module reports to emulated hubs, addressed by the hub host DPS assigned."""

    def __init__(
        self, hub_urls: Mapping[str, str], *, verify: bool | str = True, timeout: float = 10.0
    ) -> None:
        self._hub_urls = {host.lower(): url.rstrip("/") for host, url in hub_urls.items()}
        trust = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._client = httpx.Client(verify=trust, timeout=timeout)

    def __repr__(self) -> str:
        return f"HttpModuleReporter(hubs={sorted(self._hub_urls)!r})"

    def report(
        self, hub_host: str, device_id: str, key: SecretKey, module_id: str, reported: dict[str, Any]
    ) -> None:
        """Merge `reported` into the module's reported properties; AzureError if the hub refuses."""
        base = self._hub_urls.get(hub_host.lower())
        if base is None:
            raise AzureError(f"no address for IoT hub {hub_host!r}; known: {sorted(self._hub_urls)}")
        token = generate_token(f"{hub_host}/devices/{device_id}", key)
        module = f"{quote(device_id, safe='')}/modules/{quote(module_id, safe='')}"
        url = f"{base}/devices/{module}/properties/reported"
        try:
            response = self._client.patch(
                url, params={"api-version": HUB_API_VERSION}, json=reported, headers={"Authorization": token}
            )
        except httpx.HTTPError as exc:
            raise AzureError(
                f"IoT hub {hub_host}: no response ({type(exc).__name__})", retryable=True
            ) from None
        if response.status_code >= 300:
            raise AzureError(
                f"IoT hub {hub_host}: report of {device_id}/{module_id} refused: HTTP {response.status_code}",
                status=response.status_code,
                retryable=response.status_code >= 500 or response.status_code == 429,
            )

    def close(self) -> None:
        self._client.close()
