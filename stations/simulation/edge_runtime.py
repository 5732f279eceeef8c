"""`SimulatedEdgeRuntime`: what a simulated device's IoT Edge runtime tells its hub after provisioning.

Responsible for: the `$edgeAgent` / `$edgeHub` reported properties a started runtime sends (shaped as
the real edgeAgent reports them: `schemaVersion`, `lastDesiredStatus`, `runtime.platform`,
`systemModules.edgeAgent|edgeHub.runtimeStatus`, ...), and the failure modes a line must detect:
`never_connects` (nothing is reported), `runtime_error` (edgeHub keeps failing, edgeAgent says why).
Not responsible for: transport (a `ModuleReporter`, e.g. `pipeline.azure.hub_device.HttpModuleReporter`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.azure.ports import AzureError
from pipeline.domain.keys import SecretKey

BEHAVIOURS = ("running", "never_connects", "runtime_error")
RUNTIME_VERSION = "1.5.0"
log = logging.getLogger(__name__)


class ModuleReporter(Protocol):
    """Sends a module's reported properties to its hub as the device."""

    def report(
        self, hub_host: str, device_id: str, key: SecretKey, module_id: str, reported: dict[str, Any]
    ) -> None: ...


def _module(status: str, description: str, exit_code: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "runtimeStatus": status,
        "statusDescription": description,
        "exitCode": exit_code,
        "lastStartTimeUtc": now,
        "lastExitTimeUtc": now if status != "running" else "0001-01-01T00:00:00Z",
        "restartPolicy": "always",
        "type": "docker",
        "settings": {"image": f"mcr.microsoft.com/azureiotedge-hub:{RUNTIME_VERSION[:3]}"},
    }


def edge_agent_report(behaviour: str) -> dict[str, Any]:
    """The `$edgeAgent` reported properties of a runtime that is running or failing."""
    failing = behaviour == "runtime_error"
    edge_hub = (
        _module("backoff", "edgeHub exited: Unable to bind to port 8883 (address in use)", exit_code=139)
        if failing
        else _module("running", "running")
    )
    return {
        "schemaVersion": "1.1",
        "version": {"version": RUNTIME_VERSION},
        "lastDesiredStatus": (
            {"code": 500, "description": "Error creating edgeHub: container failed to start"}
            if failing
            else {"code": 200, "description": ""}
        ),
        "lastDesiredVersion": 1,
        "runtime": {"type": "docker", "platform": {"os": "linux", "architecture": "x86_64"}},
        "systemModules": {"edgeAgent": _module("running", "running"), "edgeHub": edge_hub},
        "modules": {},
    }


class SimulatedEdgeRuntime:
    """Reports the runtime's state once the device is assigned, per the chosen behaviour."""

    def __init__(self, reporter: ModuleReporter, behaviour: str = "running") -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(
                f"edge runtime behaviour must be one of {', '.join(BEHAVIOURS)}, not {behaviour!r}"
            )
        self._reporter = reporter
        self.behaviour = behaviour

    def start(self, hub_host: str, device_id: str, key: SecretKey) -> bool:
        """Report as the started runtime would; False if nothing was reported or the hub refused."""
        if self.behaviour == "never_connects":
            return False
        try:
            self._reporter.report(hub_host, device_id, key, "$edgeAgent", edge_agent_report(self.behaviour))
            if self.behaviour == "running":
                self._reporter.report(hub_host, device_id, key, "$edgeHub", {"schemaVersion": "1.2"})
        except AzureError as exc:
            log.warning("simulated IoT Edge runtime of %s: %s", device_id, exc)
            return False
        return True
