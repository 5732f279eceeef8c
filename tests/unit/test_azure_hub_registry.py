"""AzureHubRegistry's pure parts: indexing hubs by host, and mapping real msrest exceptions."""

from __future__ import annotations

import sys

import pytest
import requests
from msrest.exceptions import ClientRequestError, HttpOperationError
from msrest.serialization import Deserializer

from pipeline.azure.hub_registry import AzureHubRegistry, error_from_sdk, hub_connection_strings
from pipeline.azure.ports import AzureError
from pipeline.domain.keys import SecretKey

KEY = SecretKey(b"h" * 32).reveal_base64()


def cs(host: str) -> str:
    return f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"


def sdk_error(status: int, code: str = "") -> HttpOperationError:
    response = requests.Response()
    response.status_code = status
    if code:
        response.headers["iothub-errorcode"] = code
    return HttpOperationError(Deserializer(), response)


def test_a_list_is_indexed_by_hostname_case_insensitively() -> None:
    assert hub_connection_strings([cs("Hub-1.azure-devices.net")]) == {
        "hub-1.azure-devices.net": cs("Hub-1.azure-devices.net")
    }


def test_a_mapping_names_the_host_dps_reports() -> None:
    index = hub_connection_strings({"hub-1.azure-devices.net": cs("127.0.0.1:8443")})
    assert index == {"hub-1.azure-devices.net": cs("127.0.0.1:8443")}


def test_a_bad_connection_string_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError):
        AzureHubRegistry(["HostName=hub;SharedAccessKeyName=x"])


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (401, False), (412, False), (429, True), (500, True), (503, True)]
)
def test_http_errors_map_to_azure_error(status: int, retryable: bool) -> None:
    error = error_from_sdk(sdk_error(status, "SomeCode"), what="IoT hub h: device d")
    assert (error.status, error.retryable) == (status, retryable)
    assert "SomeCode" in str(error)


def test_no_response_is_retryable() -> None:
    error = error_from_sdk(ClientRequestError("connection refused"), what="x")
    assert error.status is None and error.retryable


def test_unknown_hub_is_an_operator_readable_error_and_repr_hides_keys() -> None:
    registry = AzureHubRegistry([cs("hub-1.azure-devices.net")])
    with pytest.raises(AzureError, match=r"hub-2\.azure-devices\.net"):
        registry.get_device("hub-2.azure-devices.net", "d")
    assert KEY not in repr(registry)


def test_constructing_the_registry_does_not_import_the_sdk() -> None:
    """Checked in a fresh interpreter: importing pipeline.azure must stay cheap."""
    import subprocess

    code = (
        "import sys; from pipeline.azure.hub_registry import AzureHubRegistry; "
        f"AzureHubRegistry(['{cs('h')}']); "
        "import pipeline.azure.dps_service, pipeline.azure.dps_device; "
        "print('azure.iot.hub' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
