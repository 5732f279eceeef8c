"""`HttpDeviceRegistrar`: the DPS device registration API over HTTPS, as IoT Edge does it at first boot.

Responsible for: `PUT {endpoint}/{scope}/registrations/{id}/register` with a device SAS token
(sr `{scope}/registrations/{id}`, skn `registration`, azure-notes §2.2), then polling
`GET .../operations/{operationId}` honouring `Retry-After` until assigned, failed or disabled
(azure-notes §2.1, §4.3), retrying 429/5xx through `pipeline.azure.http`.
Not responsible for: deriving group device keys (`pipeline.domain.keys`), talking to the assigned hub
afterwards, or MQTT registration (azure-notes §2.5).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from pipeline.azure.http import AzureHttp, base_url_for_host
from pipeline.azure.pacing import Backoff, Clock, Sleep, TokenBucket, parse_retry_after
from pipeline.azure.ports import AzureError, DeviceRegistrar, DeviceRegistrationResult
from pipeline.azure.tokens import CachedSasToken
from pipeline.domain.keys import SecretKey

DEVICE_API_VERSION = "2021-06-01"  # what aziot-identityd and the C SDK send (azure-notes §2.1, §4.3)
FINAL_STATUSES = frozenset({"assigned", "failed", "disabled"})
PENDING_STATUSES = frozenset({"assigning", "unassigned"})


def parse_operation_status(body: Any) -> tuple[str, DeviceRegistrationResult | None, str | None]:
    """Parse a RegistrationOperationStatus into (status, final result or None, operationId)."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise AzureError("DPS device API: operation status has no 'status'")
    status: str = body["status"]
    operation_id = body.get("operationId") if isinstance(body.get("operationId"), str) else None
    if status in PENDING_STATUSES:
        return status, None, operation_id
    if status not in FINAL_STATUSES:
        raise AzureError(f"DPS device API: unknown registration status {status[:40]!r}")
    raw_state = body.get("registrationState")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    code = state.get("errorCode")
    return (
        status,
        DeviceRegistrationResult(
            status=status,
            assigned_hub=state.get("assignedHub"),
            device_id=state.get("deviceId"),
            error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            error_message=state.get("errorMessage"),
        ),
        operation_id,
    )


class HttpDeviceRegistrar(DeviceRegistrar):
    """Register devices with DPS over HTTP(S); one pooled client per global endpoint.

    `poll_interval` is the floor between polls (aziot uses 5 s; DPS allows 5 polls per 10 s per
    device, azure-notes §3); a longer `Retry-After` from DPS wins, up to `max_poll_interval` if set (the
    emulator always says 3 s, as DPS does; tests cap it). Throttled (429) polls always honour it.
    """

    def __init__(
        self,
        *,
        api_version: str = DEVICE_API_VERSION,
        poll_interval: float = 1.0,
        max_poll_interval: float | None = None,
        request_timeout: float = 30.0,
        backoff: Backoff | None = None,
        registrations_per_minute: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        wall_clock: Clock = time.time,
        rng: Callable[[float, float], float] = random.uniform,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._params = {"api-version": api_version}
        if max_poll_interval is not None and max_poll_interval < poll_interval:
            raise ValueError("max_poll_interval must not be shorter than poll_interval")
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._timeout = httpx.Timeout(request_timeout, connect=min(request_timeout, 10.0))
        self._backoff = backoff
        self._pacer = (
            TokenBucket(registrations_per_minute, clock=clock, sleep=sleep)
            if registrations_per_minute
            else None
        )
        self._clock, self._sleep, self._wall_clock, self._rng = clock, sleep, wall_clock, rng
        self._verify = verify
        self._transport = transport
        self._clients: dict[str, AzureHttp] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpDeviceRegistrar(endpoints={sorted(self._clients)!r})"

    def close(self) -> None:
        """Close every pooled client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _http_for(self, global_endpoint: str) -> AzureHttp:
        base = base_url_for_host(global_endpoint)
        with self._lock:
            if base not in self._clients:
                self._clients[base] = AzureHttp(
                    base,
                    pacer=self._pacer,
                    backoff=self._backoff,
                    timeout=self._timeout,
                    sleep=self._sleep,
                    rng=self._rng,
                    verify=self._verify,
                    transport=self._transport,
                )
            return self._clients[base]

    def register(
        self,
        *,
        global_endpoint: str,
        id_scope: str,
        registration_id: str,
        key: SecretKey,
        timeout: float = 60.0,
    ) -> DeviceRegistrationResult:
        """Register and poll until DPS gives a final answer; AzureError(retryable) on timeout."""
        http = self._http_for(global_endpoint)
        token = CachedSasToken(
            f"{id_scope}/registrations/{registration_id}", key, policy="registration", clock=self._wall_clock
        )
        path = f"/{quote(id_scope, safe='')}/registrations/{quote(registration_id, safe='')}"
        what = f"DPS registration of {registration_id!r}"
        deadline = self._clock() + timeout
        response = http.send(
            "PUT",
            f"{path}/register",
            what=what,
            auth=token,
            params=self._params,
            json_body={"registrationId": registration_id},
        )
        operation_id: str | None = None
        while True:
            status, result, operation_id = self._step(response, operation_id, what=what)
            if result is not None:
                return result
            wait = self._poll_wait(response)
            if self._clock() + wait > deadline:
                raise AzureError(f"{what}: still {status} after {timeout:.0f}s", retryable=True)
            self._sleep(wait)
            response = http.send(
                "GET",
                f"{path}/operations/{quote(operation_id or '', safe='')}",
                what=what,
                auth=token,
                params=self._params,
            )

    def _poll_wait(self, response: httpx.Response) -> float:
        wait = max(self._poll_interval, parse_retry_after(response.headers.get("retry-after")) or 0.0)
        return wait if self._max_poll_interval is None else min(wait, self._max_poll_interval)

    @staticmethod
    def _step(
        response: httpx.Response, operation_id: str | None, *, what: str
    ) -> tuple[str, DeviceRegistrationResult | None, str | None]:
        try:
            body = response.json()
        except ValueError:
            raise AzureError(f"{what}: response is not JSON", status=response.status_code) from None
        status, result, new_id = parse_operation_status(body)
        operation_id = new_id or operation_id
        if result is None and not operation_id:
            raise AzureError(
                f"{what}: DPS answered {status!r} without an operationId", status=response.status_code
            )
        return status, result, operation_id
