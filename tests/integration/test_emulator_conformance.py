"""Emulator responses validated against Microsoft's DPS service OpenAPI (swagger 2.0) definitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from pipeline.azure.sas import generate_token, parse_connection_string
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

SPEC = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "openapi" / "dps-service-2021-10-01.json").read_text()
)
API = {"api-version": "2021-10-01"}


def _observed_nulls_removed(instance: Any) -> Any:
    """The real service echoes `"provisioningStatus": null` (azure-notes §1.5); the swagger cannot say so."""
    if isinstance(instance, list):
        return [_observed_nulls_removed(item) for item in instance]
    if isinstance(instance, dict) and instance.get("provisioningStatus", "") is None:
        return {name: value for name, value in instance.items() if name != "provisioningStatus"}
    return instance


def validate(instance: Any, definition: str, *, array: bool = False) -> None:
    instance = _observed_nulls_removed(instance)
    schema: dict[str, Any] = {"$ref": f"#/definitions/{definition}", "definitions": SPEC["definitions"]}
    if array:
        schema = {
            "type": "array",
            "items": {"$ref": f"#/definitions/{definition}"},
            "definitions": SPEC["definitions"],
        }
    jsonschema.validate(instance, schema)


@pytest.fixture(scope="module")
def svc() -> Iterator[tuple[RunningEmulator, httpx.Client]]:
    emu = start_emulator(EmulatorConfig())
    cs = parse_connection_string(emu.service_connection_string)
    token = generate_token(cs.host_name, cs.key, policy=cs.key_name)
    with httpx.Client(base_url=emu.device_endpoint, headers={"Authorization": token}, params=API) as client:
        yield emu, client
    emu.stop()


def test_service_responses_match_the_spec(svc: tuple[RunningEmulator, httpx.Client]) -> None:
    emu, client = svc
    # the swagger types every TwinCollection value as an object, so nest the tag
    twin = {"tags": {"site": {"line": "L1"}}, "properties": {"desired": {}}}
    body = {
        "registrationId": "c-1",
        "attestation": {"type": "symmetricKey"},
        "capabilities": {"iotEdge": True},
        "initialTwin": twin,
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
    }
    validate(client.put("/enrollments/c-1", json=body).json(), "IndividualEnrollment")
    validate(client.get("/enrollments/c-1").json(), "IndividualEnrollment")
    validate(client.post("/enrollments/c-1/attestationmechanism").json(), "AttestationMechanism")
    validate(
        client.post("/enrollments/query", json={"query": "SELECT *"}).json(),
        "IndividualEnrollment",
        array=True,
    )
    group = client.put(
        "/enrollmentGroups/g", json={"enrollmentGroupId": "g", "attestation": {"type": "symmetricKey"}}
    )
    validate(group.json(), "EnrollmentGroup")
    bulk = client.post("/enrollments", json={"enrollments": [body], "mode": "create"}).json()
    validate(bulk, "BulkEnrollmentOperationResult")
    validate(client.get("/enrollments/none").json(), "ProvisioningServiceErrorDetails")
    key = derive_device_key(
        SecretKey.from_base64(group.json()["attestation"]["symmetricKey"]["primaryKey"]), "c-2"
    )
    device = {"Authorization": generate_token(f"{emu.id_scope}/registrations/c-2", key)}
    base = f"{emu.device_endpoint}/{emu.id_scope}/registrations/c-2"
    op = httpx.put(f"{base}/register", params=API, json={"registrationId": "c-2"}, headers=device).json()
    httpx.get(f"{base}/operations/{op['operationId']}", params=API, headers=device)
    validate(client.get("/registrations/c-2").json(), "DeviceRegistrationState")
    validate(client.post("/registrations/g/query").json(), "DeviceRegistrationState", array=True)


DEVICE_SPEC = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "openapi" / "dps-device-2021-10-01.json").read_text()
)


def validate_device(instance: Any, definition: str) -> None:
    jsonschema.validate(
        instance, {"$ref": f"#/definitions/{definition}", "definitions": DEVICE_SPEC["definitions"]}
    )


def test_device_responses_match_the_spec(svc: tuple[RunningEmulator, httpx.Client]) -> None:
    emu, client = svc
    group = client.put(
        "/enrollmentGroups/dg", json={"enrollmentGroupId": "dg", "attestation": {"type": "symmetricKey"}}
    ).json()
    key = derive_device_key(SecretKey.from_base64(group["attestation"]["symmetricKey"]["primaryKey"]), "d-1")
    device = {"Authorization": generate_token(f"{emu.id_scope}/registrations/d-1", key)}
    base = f"{emu.device_endpoint}/{emu.id_scope}/registrations/d-1"

    registered = httpx.put(f"{base}/register", params=API, json={"registrationId": "d-1"}, headers=device)
    assert registered.status_code == 202
    validate_device(registered.json(), "RegistrationOperationStatus")
    polled = httpx.get(f"{base}/operations/{registered.json()['operationId']}", params=API, headers=device)
    validate_device(polled.json(), "RegistrationOperationStatus")
    assert polled.json()["registrationState"]["registrationId"] == "d-1"
    lookup = httpx.post(base, params=API, json={"registrationId": "d-1"}, headers=device)
    validate_device(lookup.json(), "DeviceRegistrationResult")

    wrong = {"Authorization": generate_token(f"{emu.id_scope}/registrations/d-1", SecretKey.generate())}
    refused = httpx.put(f"{base}/register", params=API, json={"registrationId": "d-1"}, headers=wrong)
    assert refused.status_code == 401
    assert {"errorCode", "trackingId", "message", "timestampUtc"} <= set(refused.json())
