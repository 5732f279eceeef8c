"""DPS device API of the emulator over real HTTP: every client's token form, precedence, outcomes, hubs."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from pipeline.azure.sas import generate_token, parse_connection_string, sign
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

SCOPE = "0ne00AB12CD"  # mixed case: aziot lower-cases it (azure-notes §2.2)
HUBS = ("edgeline-hub-1.azure-devices.net", "edgeline-hub-2.azure-devices.net")
DEVICE_API = {"api-version": "2021-06-01"}
PLAIN = ssl.create_default_context()  # built once: httpx builds one per client otherwise (slow)


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    running = start_emulator(EmulatorConfig(id_scope=SCOPE, hubs=HUBS, polls_per_device_per_10s=0))
    yield running
    running.stop()


@pytest.fixture
def svc(emu: RunningEmulator) -> Iterator[httpx.Client]:
    emu.reset()
    cs = parse_connection_string(emu.service_connection_string)
    token = generate_token(cs.host_name, cs.key, policy=cs.key_name)
    params = {"api-version": "2021-10-01"}
    with httpx.Client(
        base_url=emu.device_endpoint, headers={"Authorization": token}, params=params
    ) as client:
        yield client


def make_group(svc: httpx.Client, group_id: str = "line-1", **extra: Any) -> SecretKey:
    body = {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"}, **extra}
    response = svc.put(f"/enrollmentGroups/{group_id}", json=body)
    assert response.status_code == 200, response.text
    return SecretKey.from_base64(response.json()["attestation"]["symmetricKey"]["primaryKey"])


def make_individual(svc: httpx.Client, reg_id: str, **extra: Any) -> tuple[SecretKey, SecretKey]:
    body = {"registrationId": reg_id, "attestation": {"type": "symmetricKey"}, **extra}
    keys = svc.put(f"/enrollments/{reg_id}", json=body).json()["attestation"]["symmetricKey"]
    return SecretKey.from_base64(keys["primaryKey"]), SecretKey.from_base64(keys["secondaryKey"])


def python_sdk_token(reg_id: str, key: SecretKey) -> str:
    return generate_token(f"{SCOPE}/registrations/{reg_id}", key)  # %2F, no skn, 1 h


def register(emu: RunningEmulator, reg_id: str, token: str) -> tuple[httpx.Response, dict[str, Any] | None]:
    """Register and poll to the end; return the register response and the final poll body."""
    base = f"{emu.device_endpoint}/{SCOPE}/registrations/{reg_id}"
    with httpx.Client(headers={"Authorization": token}, params=DEVICE_API, verify=PLAIN) as device:
        first = device.put(f"{base}/register", json={"registrationId": reg_id, "payload": None})
        if first.status_code != 202:
            return first, None
        for _ in range(100):
            poll = device.get(f"{base}/operations/{first.json()['operationId']}")
            if poll.status_code == 200:
                return first, poll.json()
            assert poll.status_code == 202 and poll.json()["registrationState"]["registrationId"] == reg_id
            time.sleep(0.01)
    raise AssertionError("registration never finished")


def c_sdk_token(reg_id: str, key: SecretKey) -> str:
    sr = quote(f"{SCOPE}/registrations/{reg_id}", safe="").replace("%2F", "%2f")
    se = int(time.time()) + 3600
    sig = quote_plus(sign(key, sr + "\n" + str(se)))
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=registration"


TOKEN_VARIANTS = {
    "python-sdk": python_sdk_token,
    "aziot": lambda rid, key: generate_token(
        f"{SCOPE}/registrations/{rid}".lower(), key, ttl=30, policy="registration", encode_slashes=False
    ),
    "c-sdk": c_sdk_token,
    "cli": lambda rid, key: generate_token(
        f"{SCOPE}/registrations/{rid}", key, ttl=6 * 3600, policy="registration"
    ),
    "fields-reordered": lambda rid, key: (
        "SharedAccessSignature "
        + "&".join(
            reversed(
                generate_token(f"{SCOPE}/registrations/{rid}", key, policy="registration")[22:].split("&")
            )
        )
    ),
}


@pytest.mark.parametrize("variant", sorted(TOKEN_VARIANTS))
def test_every_client_token_form_registers(emu: RunningEmulator, svc: httpx.Client, variant: str) -> None:
    group_key = make_group(svc)
    reg_id = f"sn-{variant}"
    first, final = register(
        emu, reg_id, TOKEN_VARIANTS[variant](reg_id, derive_device_key(group_key, reg_id))
    )
    assert first.status_code == 202, first.text
    assert set(first.json()) == {"operationId", "status"} and first.json()["status"] == "assigning"
    assert first.headers["Retry-After"] and first.headers["Location"].endswith(f"/{reg_id}/register")
    assert final is not None and final["status"] == "assigned"
    state = final["registrationState"]
    assert state["deviceId"] == reg_id and state["assignedHub"] in HUBS
    assert state["substatus"] == "initialAssignment"


def test_group_member_with_secondary_derived_key(emu: RunningEmulator, svc: httpx.Client) -> None:
    make_group(svc)
    secondary = SecretKey.from_base64(
        svc.post("/enrollmentGroups/line-1/attestationmechanism").json()["symmetricKey"]["secondaryKey"]
    )
    _, final = register(emu, "sn-2", python_sdk_token("sn-2", derive_device_key(secondary, "sn-2")))
    assert final is not None and final["status"] == "assigned"


@pytest.mark.parametrize(
    "case", ["wrong-key", "expired", "derived-from-individual", "group-key-itself", "bad-skn", "other-id"]
)
def test_rejected_tokens_get_401(emu: RunningEmulator, svc: httpx.Client, case: str) -> None:
    group_key = make_group(svc)
    individual_key, _ = make_individual(svc, "sn-ind")
    reg_id = "sn-ind" if case == "derived-from-individual" else "sn-x"
    resource = f"{SCOPE}/registrations/{reg_id}"
    token = {
        "wrong-key": lambda: python_sdk_token(reg_id, SecretKey.generate()),
        "expired": lambda: generate_token(
            resource, derive_device_key(group_key, reg_id), expiry=int(time.time()) - 1
        ),
        "derived-from-individual": lambda: python_sdk_token(
            reg_id, derive_device_key(individual_key, reg_id)
        ),
        "group-key-itself": lambda: python_sdk_token(reg_id, group_key),
        "bad-skn": lambda: generate_token(resource, derive_device_key(group_key, reg_id), policy="owner"),
        "other-id": lambda: python_sdk_token("sn-y", derive_device_key(group_key, reg_id)),
    }[case]()
    response, _ = register(emu, reg_id, token)
    assert response.status_code == 401
    assert response.json()["errorCode"] == 401002


def test_individual_enrollment_takes_precedence_over_group(emu: RunningEmulator, svc: httpx.Client) -> None:
    group_key = make_group(svc, iotHubs=[HUBS[0]])
    primary, secondary = make_individual(
        svc, "sn-p", deviceId="edge-p", iotHubs=[HUBS[1]], allocationPolicy="static"
    )
    group_token = python_sdk_token("sn-p", derive_device_key(group_key, "sn-p"))
    assert register(emu, "sn-p", group_token)[0].status_code == 401
    for key in (primary, secondary):
        _, final = register(emu, "sn-p", python_sdk_token("sn-p", key))
        assert final is not None
        assert final["registrationState"]["assignedHub"] == HUBS[1]
        assert final["registrationState"]["deviceId"] == "edge-p"


def test_disabled_enrollments_end_disabled(emu: RunningEmulator, svc: httpx.Client) -> None:
    primary, _ = make_individual(svc, "sn-off", provisioningStatus="disabled")
    _, final = register(emu, "sn-off", python_sdk_token("sn-off", primary))
    assert final is not None and final["status"] == "disabled"
    group_key = make_group(svc, "off-line", provisioningStatus="disabled")
    _, final = register(
        emu, "sn-g-off", python_sdk_token("sn-g-off", derive_device_key(group_key, "sn-g-off"))
    )
    assert final is not None and final["status"] == "disabled"


def test_no_linked_hub_fails_with_400208(emu: RunningEmulator, svc: httpx.Client) -> None:
    primary, _ = make_individual(svc, "sn-nohub", iotHubs=["unlinked.azure-devices.net"])
    _, final = register(emu, "sn-nohub", python_sdk_token("sn-nohub", primary))
    assert final is not None and final["status"] == "failed"
    assert final["registrationState"]["errorCode"] == 400208


def test_hashed_allocation_spreads_and_is_stable(emu: RunningEmulator, svc: httpx.Client) -> None:
    group_key = make_group(svc, reprovisionPolicy={"updateHubAssignment": True, "migrateDeviceData": True})
    hubs: dict[str, str] = {}
    for i in range(16):
        reg_id = f"sn-h{i}"
        _, final = register(emu, reg_id, python_sdk_token(reg_id, derive_device_key(group_key, reg_id)))
        assert final is not None
        hubs[reg_id] = final["registrationState"]["assignedHub"]
    assert set(hubs.values()) == set(HUBS)
    _, again = register(emu, "sn-h0", python_sdk_token("sn-h0", derive_device_key(group_key, "sn-h0")))
    assert again is not None and again["registrationState"]["assignedHub"] == hubs["sn-h0"]


def test_registration_records_visible_through_service_api(emu: RunningEmulator, svc: httpx.Client) -> None:
    group_key = make_group(svc, capabilities={"iotEdge": True}, initialTwin={"tags": {"line": "L1"}})
    assert svc.post("/registrations/line-1/query").json() == []
    register(emu, "sn-r", python_sdk_token("sn-r", derive_device_key(group_key, "sn-r")))
    record = svc.get("/registrations/sn-r").json()
    assert record["status"] == "assigned" and record["substatus"] == "initialAssignment"
    assert [r["registrationId"] for r in svc.post("/registrations/line-1/query").json()] == ["sn-r"]
    device = emu.hub_registry.get(record["assignedHub"], "sn-r")
    assert device is not None and device.iot_edge and device.tags == {"line": "L1"}
    assert svc.delete("/enrollmentGroups/line-1").status_code == 204
    assert svc.get("/registrations/sn-r").status_code == 200  # records survive group deletion
    assert svc.delete("/registrations/sn-r").status_code == 204
    assert svc.get("/registrations/sn-r").status_code == 404


def test_status_lookup_and_body_mismatch(emu: RunningEmulator, svc: httpx.Client) -> None:
    primary, _ = make_individual(svc, "sn-s")
    token = python_sdk_token("sn-s", primary)
    url = f"{emu.device_endpoint}/{SCOPE}/registrations/sn-s"
    headers = {"Authorization": token}
    assert (
        httpx.put(
            f"{url}/register", params=DEVICE_API, json={"registrationId": "x"}, headers=headers
        ).status_code
        == 400
    )
    assert (
        httpx.post(url, params=DEVICE_API, json={"registrationId": "sn-s"}, headers=headers).status_code
        == 404
    )
    register(emu, "sn-s", token)
    lookup = httpx.post(url, params=DEVICE_API, json={"registrationId": "sn-s"}, headers=headers)
    assert lookup.status_code == 200 and lookup.json()["status"] == "assigned"


def test_assign_delay_shows_assigning_first(svc: httpx.Client) -> None:
    slow = start_emulator(EmulatorConfig(id_scope=SCOPE, hubs=HUBS[:1], assign_delay_seconds=0.3))
    try:
        cs = parse_connection_string(slow.service_connection_string)
        auth = {"Authorization": generate_token(cs.host_name, cs.key, policy=cs.key_name)}
        body = {"registrationId": "sn-d", "attestation": {"type": "symmetricKey"}}
        keys = httpx.put(
            f"{slow.device_endpoint}/enrollments/sn-d",
            params={"api-version": "2021-10-01"},
            json=body,
            headers=auth,
        ).json()
        key = SecretKey.from_base64(keys["attestation"]["symmetricKey"]["primaryKey"])
        base = f"{slow.device_endpoint}/{SCOPE}/registrations/sn-d"
        with httpx.Client(
            headers={"Authorization": python_sdk_token("sn-d", key)}, params=DEVICE_API
        ) as device:
            op = device.put(f"{base}/register", json={"registrationId": "sn-d"}).json()["operationId"]
            early = device.get(f"{base}/operations/{op}")
            assert early.status_code == 202 and early.json()["status"] == "assigning"
            assert (
                httpx.get(
                    f"{slow.device_endpoint}/registrations/sn-d",
                    params={"api-version": "2021-10-01"},
                    headers=auth,
                ).json()["status"]
                == "assigning"
            )
            time.sleep(0.35)
            assert device.get(f"{base}/operations/{op}").json()["status"] == "assigned"
    finally:
        slow.stop()


def test_azure_iot_hub_registry_manager_reads_and_patches_the_twin(
    emu: RunningEmulator, svc: httpx.Client
) -> None:
    from azure.iot.hub import IoTHubRegistryManager
    from azure.iot.hub.models import Twin

    group_key = make_group(svc, capabilities={"iotEdge": True}, initialTwin={"tags": {"line": "L1"}})
    _, final = register(emu, "sn-t", python_sdk_token("sn-t", derive_device_key(group_key, "sn-t")))
    assert final is not None
    hub = final["registrationState"]["assignedHub"]
    os.environ["REQUESTS_CA_BUNDLE"] = emu.ca_file
    try:
        manager = IoTHubRegistryManager.from_connection_string(emu.hub_connection_string(hub))
        device = manager.get_device("sn-t")
        assert device.capabilities.iot_edge is True
        twin = manager.get_twin("sn-t")
        assert twin.tags == {"line": "L1"}
        patched = manager.update_twin("sn-t", Twin(tags={"station": "S1"}), twin.etag)
        assert patched.tags == {"line": "L1", "station": "S1"}
    finally:
        del os.environ["REQUESTS_CA_BUNDLE"]
