"""What a simulated IoT Edge device does when it boots: read its flashed config, register with DPS.

It uses only what was flashed (endpoint, ID scope, registration ID and key from the config file), as
aziot-identityd would, so a wrong key or scope in the config shows up as a DPS refusal, not a pass.
Not responsible for: the serial side of the simulator (`stations.simulator`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pipeline.azure.ports import AzureError, DeviceRegistrar, DeviceRegistrationResult
from pipeline.edgeconfig.model import EdgeConfigError
from pipeline.edgeconfig.parse import parse_provisioning

CONFIG_PATHS = ("etc/aziot/config.toml", "etc/iotedge/config.yaml")
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # about a minute of retries, then the device gives up


class BootError(RuntimeError):
    """The device could not start provisioning (no config, unreadable config)."""


def flashed_config(flash_dir: Path) -> Path:
    """The IoT Edge config file in a device's flash, whichever version was flashed."""
    for relative in CONFIG_PATHS:
        candidate = flash_dir / relative
        if candidate.is_file():
            return candidate
    raise BootError(f"no IoT Edge config in {flash_dir} (looked for {', '.join(CONFIG_PATHS)})")


def boot(
    flashed: Path,
    registrar: DeviceRegistrar,
    timeout: float = 120.0,
    *,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
) -> DeviceRegistrationResult:
    """Parse the flashed config (a file, or a flash folder to look in) and register with DPS using its key.

    A retryable refusal (429, 5xx, a dropped connection) is retried after each of `retry_delays`, as
    aziot-identityd keeps retrying provisioning; a permanent one (401, disabled) is the answer at once.
    """
    path = flashed if flashed.is_file() else flashed_config(flashed)
    try:
        parsed = parse_provisioning(path.read_bytes(), path.name)
    except EdgeConfigError as exc:
        raise BootError(f"{path}: {exc}") from None
    for delay in (*retry_delays, None):
        try:
            return registrar.register(
                global_endpoint=parsed.global_endpoint,
                id_scope=parsed.id_scope,
                registration_id=parsed.registration_id,
                key=parsed.device_key,
                timeout=timeout,
            )
        except AzureError as exc:
            if not exc.retryable or delay is None:
                return _failed(exc)
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns")


def _failed(exc: AzureError) -> DeviceRegistrationResult:
    return DeviceRegistrationResult(
        status="failed",
        assigned_hub=None,
        device_id=None,
        error_code=exc.error_code,
        error_message=str(exc),
    )
