"""The DPS service host and the devices' global endpoint must belong to the same service."""

from __future__ import annotations

import pytest

from pipeline.azure.endpoints import endpoint_mismatch

AZURE_GLOBAL = "https://global.azure-devices-provisioning.net"


@pytest.mark.parametrize(
    ("service", "endpoint"),
    [
        ("my-dps.azure-devices-provisioning.net", AZURE_GLOBAL),
        ("my-dps.azure-devices-provisioning.net", "https://global.azure-devices-provisioning.net/"),
        ("my-dps.azure-devices-provisioning.net", "https://dps-pe.factory.example.com"),  # private endpoint
        ("my-dps.azure-devices-provisioning.cn", "https://global.azure-devices-provisioning.cn"),
        ("http://127.0.0.1:5080", "http://127.0.0.1:5080"),
        ("127.0.0.1:8443", "https://127.0.0.1:8443"),
        ("http://emulator:5080", "http://10.1.2.3:5080"),  # the same emulator by another name
    ],
)
def test_matching_pairs_pass(service: str, endpoint: str) -> None:
    assert endpoint_mismatch(service, endpoint) is None


@pytest.mark.parametrize(
    ("service", "endpoint", "says"),
    [
        ("http://127.0.0.1:5080", AZURE_GLOBAL, "is Azure's but the DPS service is http://127.0.0.1:5080"),
        ("http://emulator:5080", "https://global.azure-devices-provisioning.cn", "is Azure's"),
        ("my-dps.azure-devices-provisioning.net", "http://127.0.0.1:5080", "looks like an emulator"),
        ("my-dps.azure-devices-provisioning.net", "https://localhost:8443", "looks like an emulator"),
        (
            "my-dps.azure-devices-provisioning.net",
            "https://global.azure-devices-provisioning.cn",
            "another Azure cloud",
        ),
        ("http://127.0.0.1:5080", "http://127.0.0.1:6080", "another port"),
    ],
)
def test_mismatched_pairs_are_named_in_one_line(service: str, endpoint: str, says: str) -> None:
    problem = endpoint_mismatch(service, endpoint)
    assert problem is not None and says in problem
    assert "\n" not in problem
    assert "EDGELINE_DPS_GLOBAL_ENDPOINT" in problem and "EDGELINE_DPS_CONNECTION_STRING" in problem
