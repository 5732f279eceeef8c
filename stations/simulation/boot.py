"""What a simulated IoT Edge device does when it boots: read its flashed config, register with DPS.

It uses only what was flashed (endpoint, ID scope, registration ID and key from the config file), as
aziot-identityd would, so a wrong key or scope in the config shows up as a DPS refusal, not a pass.
Like aziot-identityd it does not give up on a throttled or failing DPS (429, 5xx, no connection): it
retries with capped exponential backoff, waiting at least what `Retry-After` asks, for a long
configurable time (`ProvisioningRetry`); only a refusal (401, 404, a failed/disabled registration) ends
it at once.
Not responsible for: the serial side of the simulator (`stations.drivers.line_protocol.simulator`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.azure.ports import AzureError, DeviceRegistrar, DeviceRegistrationResult
from pipeline.domain.keys import SecretKey
from pipeline.edgeconfig.model import EdgeConfigError
from pipeline.edgeconfig.parse import parse_provisioning

CONFIG_PATHS = ("etc/aziot/config.toml", "etc/iotedge/config.yaml")


class EdgeRuntime(Protocol):
    """The device's IoT Edge runtime, started once DPS assigned the device (e.g. SimulatedEdgeRuntime)."""

    def start(self, hub_host: str, device_id: str, key: SecretKey) -> bool: ...


class BootError(RuntimeError):
    """The device could not start provisioning (no config, unreadable config)."""


def flashed_config(flash_dir: Path) -> Path:
    """The IoT Edge config file in a device's flash, whichever version was flashed."""
    for relative in CONFIG_PATHS:
        candidate = flash_dir / relative
        if candidate.is_file():
            return candidate
    raise BootError(f"no IoT Edge config in {flash_dir} (looked for {', '.join(CONFIG_PATHS)})")


@dataclass(frozen=True, slots=True)
class ProvisioningRetry:
    """How a device keeps trying DPS after transient failures (aziot-identityd keeps going for hours).

    The n-th wait is uniform in [cap_n/2, cap_n] with cap_n = min(cap, base * 2**n), and never shorter
    than the server's `Retry-After`; attempts stop once `keep_trying_seconds` have passed.
    """

    keep_trying_seconds: float = 24 * 3600.0
    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: Callable[[float, float], float]) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 62))
        return max(rng(ceiling / 2, ceiling), retry_after or 0.0)


def boot(
    flashed: Path,
    registrar: DeviceRegistrar,
    timeout: float = 120.0,
    *,
    retry: ProvisioningRetry | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[float, float], float] = random.uniform,
    runtime: EdgeRuntime | None = None,
) -> DeviceRegistrationResult:
    """Parse the flashed config (a file, or a flash folder to look in) and register with DPS using its key.

    Transient failures are retried per `retry` (default: `ProvisioningRetry()`) until DPS answers,
    the retry time runs out, or `stop` is set (the device is switched off). Once assigned, `runtime`
    (if any) starts and reports to the assigned hub with the same key.
    """
    path = flashed if flashed.is_file() else flashed_config(flashed)
    try:
        parsed = parse_provisioning(path.read_bytes(), path.name)
    except EdgeConfigError as exc:
        raise BootError(f"{path}: {exc}") from None
    retry = retry or ProvisioningRetry()
    stop = stop or threading.Event()
    deadline = clock() + retry.keep_trying_seconds
    attempt = 0
    while True:
        try:
            result = registrar.register(
                global_endpoint=parsed.global_endpoint,
                id_scope=parsed.id_scope,
                registration_id=parsed.registration_id,
                key=parsed.device_key,
                timeout=timeout,
            )
        except AzureError as exc:
            wait = retry.delay(attempt, exc.retry_after, rng)
            attempt += 1
            if not exc.retryable or clock() + wait > deadline or stop.wait(wait):
                return _failed(exc, attempt)
            continue
        if runtime is not None and result.status == "assigned" and result.assigned_hub:
            runtime.start(result.assigned_hub, result.device_id or parsed.registration_id, parsed.device_key)
        return result


def _failed(exc: AzureError, attempts: int) -> DeviceRegistrationResult:
    plural = "s" if attempts > 1 else ""
    return DeviceRegistrationResult(
        status="failed",
        assigned_hub=None,
        device_id=None,
        error_code=exc.error_code,
        error_message=f"{exc} (gave up after {attempts} attempt{plural})",
    )
