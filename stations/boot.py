"""What a simulated IoT Edge device does when it boots: read its flashed config, register with DPS.

It uses only what was flashed (endpoint, ID scope, registration ID and key from the config file), as
aziot-identityd would, so a wrong key or scope in the config shows up as a DPS refusal, not a pass.
Not responsible for: the serial side of the simulator (`stations.simulator`).
"""

from __future__ import annotations

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


def boot(
    flashed: Path, registrar: DeviceRegistrar, timeout: float = 120.0, runtime: EdgeRuntime | None = None
) -> DeviceRegistrationResult:
    """Parse the flashed config (a file, or a flash folder to look in) and register with DPS using its key.

    Once assigned, `runtime` (if any) starts and reports to the assigned hub with the same key.
    """
    path = flashed if flashed.is_file() else flashed_config(flashed)
    try:
        parsed = parse_provisioning(path.read_bytes(), path.name)
    except EdgeConfigError as exc:
        raise BootError(f"{path}: {exc}") from None
    try:
        result = registrar.register(
            global_endpoint=parsed.global_endpoint,
            id_scope=parsed.id_scope,
            registration_id=parsed.registration_id,
            key=parsed.device_key,
            timeout=timeout,
        )
    except AzureError as exc:
        return DeviceRegistrationResult(
            status="failed",
            assigned_hub=None,
            device_id=None,
            error_code=exc.error_code,
            error_message=str(exc),
        )
    if runtime is not None and result.status == "assigned" and result.assigned_hub:
        runtime.start(result.assigned_hub, result.device_id or parsed.registration_id, parsed.device_key)
    return result
