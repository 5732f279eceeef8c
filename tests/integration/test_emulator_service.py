"""DPS service API of the emulator over real HTTP: shapes, keys, ETags, errors, bulk, paging, SAS."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from pipeline.azure.sas import generate_token, parse_connection_string
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

API = {"api-version": "2021-10-01"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    running = start_emulator(EmulatorConfig(hubs=("edgeline-hub-1.azure-devices.net",)))
    yield running
    running.stop()


@pytest.fixture
def svc(emu: RunningEmulator) -> Iterator[httpx.Client]:
    emu.reset()
    cs = parse_connection_string(emu.service_connection_string)
    token = generate_token(cs.host_name, cs.key, policy=cs.key_name)
    with httpx.Client(base_url=emu.device_endpoint, headers={"Authorization": token}, params=API) as client:
        yield client


def enrollment(reg_id: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"registrationId": reg_id, "attestation": {"type": "symmetricKey"}}
    body.update(extra)
    return body


def test_put_returns_generated_keys_and_get_strips_them(svc: httpx.Client) -> None:
    body = enrollment("dev-1", capabilities={"iotEdge": True}, deviceId=None, iotHubs=None)
    put = svc.put("/enrollments/dev-1", json=body)
    assert put.status_code == 200
    record = put.json()
    keys = record["attestation"]["symmetricKey"]
    assert all(len(base64.b64decode(keys[name])) == 64 for name in ("primaryKey", "secondaryKey"))
    assert "deviceId" not in record and "iotHubs" not in record
    assert record["provisioningStatus"] is None
    assert TIMESTAMP.match(record["createdDateTimeUtc"])
    assert base64.b64decode(record["etag"]).startswith(b'"')
    got = svc.get("/enrollments/dev-1").json()
    assert got["attestation"] == {"type": "symmetricKey"}
    assert got["registrationState"] == {"registrationId": "dev-1", "status": "unassigned"}
    mechanism = svc.post("/enrollments/dev-1/attestationmechanism")
    assert mechanism.json()["symmetricKey"] == keys


def test_update_keeps_created_and_changes_etag(svc: httpx.Client) -> None:
    first = svc.put("/enrollments/dev-2", json=enrollment("dev-2")).json()
    time.sleep(0.002)
    second = svc.put("/enrollments/dev-2", json=enrollment("dev-2", provisioningStatus="disabled")).json()
    assert second["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    assert second["lastUpdatedDateTimeUtc"] > first["lastUpdatedDateTimeUtc"]
    assert second["etag"] != first["etag"]


def test_if_match_mismatch_is_412_and_quoted_etag_matches(svc: httpx.Client) -> None:
    group = {"enrollmentGroupId": "g1", "attestation": {"type": "symmetricKey"}}
    etag = svc.put("/enrollmentGroups/g1", json=group)
    current = etag.json()["etag"]
    stale = svc.put("/enrollmentGroups/g1", json=group, headers={"If-Match": "Indyb25nIg=="})
    assert stale.status_code == 412
    assert stale.json()["errorCode"] == 412002
    ok = svc.delete("/enrollmentGroups/g1", headers={"If-Match": f'"{current}"'})
    assert ok.status_code == 204 and ok.content == b"" and "content-type" not in ok.headers


def test_missing_resource_is_404_with_error_details(svc: httpx.Client) -> None:
    response = svc.get("/enrollments/nobody")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert body["errorCode"] == 404201
    assert response.headers["x-ms-error-code"] == "404201"
    assert TIMESTAMP.match(body["timestampUtc"])


def test_api_version_is_required_and_bad_body_is_400(svc: httpx.Client, emu: RunningEmulator) -> None:
    no_version = httpx.get(f"{emu.device_endpoint}/enrollments/x", headers=svc.headers)
    assert no_version.status_code == 400
    for version in ("2018-04-01", "2019-03-31", "2021-06-01"):
        assert svc.get("/enrollments/x", params={"api-version": version}).status_code == 404
    mismatch = svc.put("/enrollments/a-1", json=enrollment("b-1"))
    assert mismatch.status_code == 400
    short_key = {"type": "symmetricKey", "symmetricKey": {"primaryKey": "c2hvcnQ=", "secondaryKey": None}}
    assert svc.put("/enrollments/a-1", json=enrollment("a-1", attestation=short_key)).status_code == 400


@pytest.mark.parametrize("device_id", ["edge+1", "edge#1", "édge", "x" * 129, ""])
def test_device_id_outside_iot_hub_rules_is_400(svc: httpx.Client, device_id: str) -> None:
    refused = svc.put("/enrollments/d-1", json={**enrollment("d-1"), "deviceId": device_id})
    assert refused.status_code == 400
    assert "deviceId" in refused.json()["message"]


def test_device_id_with_iot_hub_punctuation_is_accepted(svc: httpx.Client) -> None:
    device_id = "Edge-1.%_*?!(),:=@$'"
    accepted = svc.put("/enrollments/d-2", json={**enrollment("d-2"), "deviceId": device_id})
    assert accepted.status_code == 200
    assert accepted.json()["deviceId"] == device_id


def test_bulk_create_then_update_reports_per_item_409201(svc: httpx.Client) -> None:
    items = [enrollment(f"bulk-{i}") for i in range(2)]
    created = svc.post("/enrollments", json={"enrollments": items, "mode": "create"})
    assert created.json() == {"isSuccessful": True, "errors": []}
    again = svc.post("/enrollments/", json={"enrollments": items, "mode": "update"}).json()
    assert again["isSuccessful"] is False
    assert again["errors"][0] == {
        "registrationId": "bulk-0",
        "errorCode": 409201,
        "errorStatus": "Enrollment already exists.",
    }
    deleted = svc.post("/enrollments", json={"enrollments": items, "mode": "delete"})
    assert deleted.json() == {"isSuccessful": True, "errors": []}
    missing = svc.post("/enrollments", json={"enrollments": items[:1], "mode": "delete"}).json()
    assert missing["errors"][0]["errorCode"] == 404201


def test_bulk_if_match_and_limits(svc: httpx.Client) -> None:
    group = {"enrollmentGroupId": "bg", "attestation": {"type": "symmetricKey"}}
    etag = svc.put("/enrollmentGroups/bg", json=group).json()["etag"]
    stale = svc.post(
        "/enrollmentGroups",
        json={"enrollmentGroups": [{**group, "etag": "eA=="}], "mode": "updateIfMatchETag"},
    )
    assert stale.json()["errors"][0]["enrollmentGroupId"] == "bg"
    fresh = svc.post(
        "/enrollmentGroups", json={"enrollmentGroups": [{**group, "etag": etag}], "mode": "updateIfMatchETag"}
    )
    assert fresh.json()["isSuccessful"] is True
    eleven = [enrollment(f"e-{i}") for i in range(11)]
    assert svc.post("/enrollments", json={"enrollments": eleven, "mode": "create"}).status_code == 400


def test_query_pages_with_continuation_and_strips_keys(svc: httpx.Client) -> None:
    for i in range(5):
        svc.put(f"/enrollments/q-{i}", json=enrollment(f"q-{i}"))
    seen: list[str] = []
    headers = {"x-ms-max-item-count": "2"}
    while True:
        response = svc.post("/enrollments/query", json={"query": "SELECT *"}, headers=headers)
        assert response.headers["x-ms-item-type"] == "Enrollment"
        page = response.json()
        assert len(page) <= 2 and all("symmetricKey" not in item["attestation"] for item in page)
        seen += [item["registrationId"] for item in page]
        if "x-ms-continuation" not in response.headers:
            break
        headers = {**headers, "x-ms-continuation": response.headers["x-ms-continuation"]}
    assert seen == [f"q-{i}" for i in range(5)]
    assert svc.post("/enrollmentGroups/query", json={"query": "SELECT *"}).json() == []


@pytest.mark.parametrize(
    "resource, policy, key_ok, status",
    [
        ("{host}", "{policy}", True, 200),  # scheme-less host (https-style clients)
        ("{scheme_host}", "{policy}", True, 200),  # with scheme, as for a plain-HTTP endpoint
        ("{upper}", "{policy}", True, 200),  # SDKs do not lower-case: compare case-insensitively
        ("other.azure-devices-provisioning.net", "{policy}", True, 401),
        ("{host}", "registryReadWrite", True, 401),
        ("{host}", "{policy}", False, 401),
    ],
)
def test_service_sas_rules(
    emu: RunningEmulator, resource: str, policy: str, key_ok: bool, status: int
) -> None:
    from pipeline.domain.keys import SecretKey

    emu.reset()
    cs = parse_connection_string(emu.service_connection_string)
    host = cs.host_name.removeprefix("http://")
    sr = resource.format(host=host, scheme_host=cs.host_name, upper=host.upper())
    key = cs.key if key_ok else SecretKey.generate()
    token = generate_token(sr, key, policy=policy.format(policy=cs.key_name))
    response = httpx.post(f"{emu.device_endpoint}/enrollments/query", params=API, json={"query": "SELECT *"},
                          headers={"Authorization": token})  # fmt: skip
    assert response.status_code == status
    if status == 401:
        assert response.json()["errorCode"] == 401002


def test_expired_or_missing_service_token_is_401(emu: RunningEmulator) -> None:
    cs = parse_connection_string(emu.service_connection_string)
    expired = generate_token(cs.host_name, cs.key, policy=cs.key_name, expiry=int(time.time()) - 5)
    url = f"{emu.device_endpoint}/enrollments/x"
    assert httpx.get(url, params=API, headers={"Authorization": expired}).status_code == 401
    assert httpx.get(url, params=API).status_code == 401
