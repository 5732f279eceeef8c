"""Quotas, fault injection, the control API and lifecycle of the emulator, over real HTTP."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from pipeline.azure.sas import generate_token, parse_connection_string
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

API = {"api-version": "2021-10-01"}
QUERY = {"query": "SELECT *"}


def service_headers(emu: RunningEmulator) -> dict[str, str]:
    cs = parse_connection_string(emu.service_connection_string)
    return {"Authorization": generate_token(cs.host_name, cs.key, policy=cs.key_name)}


def query(emu: RunningEmulator) -> httpx.Response:
    url = f"{emu.device_endpoint}/enrollments/query"
    return httpx.post(url, params=API, json=QUERY, headers=service_headers(emu))


@pytest.fixture
def tight() -> RunningEmulator:
    emu = start_emulator(
        EmulatorConfig(operations_per_minute=3, registrations_per_minute=2, polls_per_device_per_10s=2)
    )
    yield emu  # type: ignore[misc]
    emu.stop()


def test_operations_quota_answers_429_with_retry_after(tight: RunningEmulator) -> None:
    assert [query(tight).status_code for _ in range(3)] == [200, 200, 200]
    throttled = query(tight)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json()["errorCode"] == 429001


def test_registration_and_poll_quotas(tight: RunningEmulator) -> None:
    cs = parse_connection_string(tight.service_connection_string)
    body = {"enrollmentGroupId": "g", "attestation": {"type": "symmetricKey"}}
    group = httpx.put(
        f"{tight.device_endpoint}/enrollmentGroups/g", params=API, json=body, headers=service_headers(tight)
    )
    key = derive_device_key(
        SecretKey.from_base64(group.json()["attestation"]["symmetricKey"]["primaryKey"]), "d1"
    )
    token = generate_token(f"{tight.id_scope}/registrations/d1", key)
    base = f"{tight.device_endpoint}/{tight.id_scope}/registrations/d1"
    with httpx.Client(headers={"Authorization": token}, params={"api-version": "2021-06-01"}) as device:
        statuses = [device.put(f"{base}/register", json={"registrationId": "d1"}) for _ in range(3)]
        assert [r.status_code for r in statuses] == [202, 202, 429]
        poll = f"{base}/operations/{statuses[0].json()['operationId']}"
        assert [device.get(poll).status_code for _ in range(3)] == [200, 200, 429]
    assert cs.key_name == "provisioningserviceowner"


def test_faults_switch_at_runtime_and_spare_the_control_api() -> None:
    emu = start_emulator(EmulatorConfig(fault_seed=1))
    try:
        emu.set_faults(throttle=True)
        assert query(emu).status_code == 429
        emu.set_faults(error_rate_5xx=1.0)
        assert query(emu).status_code == 503
        emu.set_faults(drop_connections_rate=1.0)
        with pytest.raises(httpx.HTTPError):
            query(emu)
        control = f"{emu.device_endpoint}/_emulator/faults"
        assert httpx.post(control, json={"latency_ms": 150}).json()["latency_ms"] == 150
        started = time.monotonic()
        assert query(emu).status_code == 200
        assert time.monotonic() - started >= 0.15
        assert httpx.post(control, json={"latencyms": 1}).status_code == 400
        assert httpx.post(f"{emu.device_endpoint}/_emulator/reset").status_code == 204
        assert httpx.get(control).json()["latency_ms"] == 0
    finally:
        emu.stop()


def test_state_dump_has_no_keys_and_state_file_round_trips(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    emu = start_emulator(EmulatorConfig(state_file=str(state_file)))
    body = {"registrationId": "kept", "attestation": {"type": "symmetricKey"}}
    put = httpx.put(
        f"{emu.device_endpoint}/enrollments/kept", params=API, json=body, headers=service_headers(emu)
    )
    primary = put.json()["attestation"]["symmetricKey"]["primaryKey"]
    dump = httpx.get(f"{emu.device_endpoint}/_emulator/state").json()
    assert dump["dps"]["enrollments"][0]["registrationId"] == "kept"
    assert primary not in json.dumps(dump)
    emu.stop()
    assert state_file.stat().st_mode & 0o077 == 0
    again = start_emulator(EmulatorConfig(state_file=str(state_file)))
    try:
        url = f"{again.device_endpoint}/enrollments/kept/attestationmechanism"
        got = httpx.post(url, params=API, headers=service_headers(again))
        assert got.json()["symmetricKey"]["primaryKey"] == primary
    finally:
        again.stop()


def test_stop_frees_ports_even_with_keep_alive_connections() -> None:
    emu = start_emulator(EmulatorConfig())
    port, hub_port = emu.port, emu.hub_port(emu.config.hubs[0])
    client = httpx.Client()
    assert (
        client.post(f"{emu.device_endpoint}/_emulator/reset").status_code == 204
    )  # leaves a kept-alive socket
    emu.stop()
    client.close()
    for free in (port, hub_port):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", free))


def test_tls_mode_serves_dps_over_https() -> None:
    emu = start_emulator(EmulatorConfig(tls=True))
    try:
        assert emu.device_endpoint.startswith("https://")
        assert not emu.service_connection_string.startswith("HostName=http")
        cs = parse_connection_string(emu.service_connection_string)
        token = generate_token(cs.host_name, cs.key, policy=cs.key_name)
        trust = ssl.create_default_context(cafile=emu.ca_file)
        url = f"{emu.device_endpoint}/enrollments/query"
        response = httpx.post(url, params=API, json=QUERY, headers={"Authorization": token}, verify=trust)
        assert response.status_code == 200
    finally:
        emu.stop()
