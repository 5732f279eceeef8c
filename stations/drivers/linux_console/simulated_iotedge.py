"""What `iotedge system status` and `iotedge check --output json` print on a simulated device.

Responsible for: output shaped as IoT Edge 1.2+ prints it (service table; the batch JSON document of
`CheckResultsSerializable`), healthy or broken (aziot-edged stopped, DPS unreachable), and a missing
config (`iotedge check` fails its config check). Not responsible for: the shell (`sim_console_shell`).
"""

from __future__ import annotations

import json

CONFIG_PATH = "/etc/aziot/config.toml"
SERVICES = ("aziot-edged", "aziot-identityd", "aziot-keyd", "aziot-certd", "aziot-tpmd")


def system_status(broken: bool) -> tuple[int, str]:
    """Exit code and output of `iotedge system status`."""
    rows = []
    for name in SERVICES:
        status = "Ready" if name == "aziot-tpmd" else "Running"
        if broken and name == "aziot-edged":
            status = "Stopped"
        rows.append(f"    {name:<24}{status}")
    text = (
        "System services:\n"
        + "\n".join(rows)
        + "\n\nUse 'iotedge system logs' to check for non-fatal errors.\n"
    )
    return 0, text


def _result(outcome: str, *details: str) -> dict[str, object]:
    body: dict[str, object] = {"result": outcome}
    if details:
        body["details"] = list(details)
    return {"result": body, "additional_info": None}


def check_json(configured: bool, broken: bool) -> tuple[int, str]:
    """Exit code (1 if any check errs) and the JSON of `iotedge check --output json`."""
    checks = {
        "config-toml-well-formed": _result("ok")
        if configured
        else _result("error", f"could not open {CONFIG_PATH}", "No such file or directory (os error 2)"),
        "host-connect-dps-endpoint": _result(
            "error",
            "Could not connect to global.azure-devices-provisioning.net : could not complete TLS handshake",
        )
        if broken
        else _result("ok"),
        "aziot-edged-production": _result("warning", "Device is not using a production-ready certificate."),
        "connect-management-uri": _result("ok"),
    }
    failed = broken or not configured
    document = {"additional_info": {"os": {"id": "debian"}, "iotedged_version": "1.5.0"}, "checks": checks}
    return (1 if failed else 0), json.dumps(document) + "\n"
