"""Emulator module twins: `$edgeAgent`/`$edgeHub` read with azure-iot-hub, reported by a device (HTTPS)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.hub_device import HttpModuleReporter
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.azure.ports import AzureError, IndividualEnrollmentSpec
from pipeline.azure.sas import generate_token
from pipeline.domain.keys import SecretKey
from pipeline.edgeconfig.model import ProvisioningConfig
from pipeline.edgeconfig.render import render
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator
from stations.simulation.boot import boot
from stations.simulation.edge_runtime import SimulatedEdgeRuntime, edge_agent_report

HUB = "edgeline-hub-1.azure-devices.net"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    emu = start_emulator(
        EmulatorConfig(host="127.0.0.1", port=0, hubs=(HUB,), cert_dir=str(tmp_path_factory.mktemp("c")))
    )
    yield emu
    emu.stop()


@pytest.fixture
def registry(emulator: RunningEmulator) -> Iterator[AzureHubRegistry]:
    hubs = AzureHubRegistry({HUB: emulator.hub_connection_string(HUB)}, verify=emulator.ca_file)
    yield hubs
    hubs.close()


@pytest.fixture
def reporter(emulator: RunningEmulator) -> Iterator[HttpModuleReporter]:
    device = HttpModuleReporter({HUB: f"https://127.0.0.1:{emulator.hub_port(HUB)}"}, verify=emulator.ca_file)
    yield device
    device.close()


_ids = iter(range(1_000_000))


def provision(emulator: RunningEmulator, *, iot_edge: bool = True) -> tuple[str, SecretKey]:
    """Enroll and register a device; return its device ID and key."""
    rid = f"sn-mt{next(_ids)}-mac-aa"
    spec = IndividualEnrollmentSpec(rid, SecretKey.generate(), SecretKey.generate(), iot_edge=iot_edge)
    with HttpDpsClient.from_connection_string(emulator.service_connection_string) as dps:
        assert dps.ensure_individual_enrollments([spec]) == {rid: None}
    registrar = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    result = registrar.register(
        global_endpoint=emulator.device_endpoint,
        id_scope=emulator.id_scope,
        registration_id=rid,
        key=spec.primary_key,
        timeout=20,
    )
    registrar.close()
    assert (result.status, result.assigned_hub) == ("assigned", HUB)
    return rid, spec.primary_key


def test_edge_device_has_runtime_module_twins_before_any_report(
    emulator: RunningEmulator, registry: AzureHubRegistry
) -> None:
    device_id, _ = provision(emulator)
    for module in ("$edgeAgent", "$edgeHub"):
        twin = registry.get_module_twin(HUB, device_id, module)
        assert twin is not None
        assert (twin.device_id, twin.module_id, twin.connection_state) == (device_id, module, "Disconnected")
        assert "systemModules" not in twin.reported


def test_running_runtime_report_is_read_back_through_azure_iot_hub(
    emulator: RunningEmulator, registry: AzureHubRegistry, reporter: HttpModuleReporter
) -> None:
    device_id, key = provision(emulator)
    assert SimulatedEdgeRuntime(reporter, "running").start(HUB, device_id, key)
    twin = registry.get_module_twin(HUB, device_id, "$edgeAgent")
    assert twin is not None and twin.connection_state == "Connected"
    system = twin.reported["systemModules"]
    assert system["edgeAgent"]["runtimeStatus"] == "running"
    assert system["edgeHub"]["runtimeStatus"] == "running"
    assert twin.reported["schemaVersion"] == "1.1"
    assert twin.reported["lastDesiredStatus"]["code"] == 200


def test_report_signed_with_another_key_is_refused(
    emulator: RunningEmulator, registry: AzureHubRegistry, reporter: HttpModuleReporter
) -> None:
    device_id, _ = provision(emulator)
    with pytest.raises(AzureError) as caught:
        reporter.report(HUB, device_id, SecretKey.generate(), "$edgeAgent", edge_agent_report("running"))
    assert caught.value.status == 401
    twin = registry.get_module_twin(HUB, device_id, "$edgeAgent")
    assert twin is not None and "systemModules" not in twin.reported


def test_report_needs_a_device_token_not_a_service_one(emulator: RunningEmulator) -> None:
    device_id, key = provision(emulator)
    url = f"https://127.0.0.1:{emulator.hub_port(HUB)}/devices/{device_id}/modules/%24edgeAgent/properties/reported"
    token = generate_token(f"{HUB}/devices/{device_id}", key, policy="iothubowner")
    response = httpx.patch(
        url,
        params={"api-version": "2021-04-12"},
        json={},
        headers={"Authorization": token},
        verify=ssl.create_default_context(cafile=emulator.ca_file),
    )
    assert response.status_code == 401
    assert "IotHubUnauthorizedAccess" in response.text


def test_non_edge_device_has_no_edge_agent(emulator: RunningEmulator, registry: AzureHubRegistry) -> None:
    device_id, _ = provision(emulator, iot_edge=False)
    assert registry.get_module_twin(HUB, device_id, "$edgeAgent") is None
    assert registry.get_module_twin(HUB, "never-registered", "$edgeAgent") is None


def test_deployment_sets_edge_agent_desired_properties(
    emulator: RunningEmulator, registry: AzureHubRegistry
) -> None:
    device_id, _ = provision(emulator)
    token = generate_token(
        f"127.0.0.1:{emulator.hub_port(HUB)}", emulator.hub_keys[HUB.lower()], policy="iothubowner"
    )
    response = httpx.patch(
        f"https://127.0.0.1:{emulator.hub_port(HUB)}/twins/{device_id}/modules/%24edgeAgent",
        params={"api-version": "2021-04-12"},
        json={"properties": {"desired": {"systemModules": {"edgeHub": {"status": "running"}}}}},
        headers={"Authorization": token},
        verify=ssl.create_default_context(cafile=emulator.ca_file),
    )
    assert response.status_code == 200, response.text
    twin = registry.get_module_twin(HUB, device_id, "$edgeAgent")
    assert twin is not None and twin.desired["systemModules"]["edgeHub"]["status"] == "running"


@pytest.mark.parametrize("behaviour", ["running", "never_connects"])
def test_booting_device_starts_its_runtime_with_the_flashed_key(
    emulator: RunningEmulator,
    registry: AzureHubRegistry,
    reporter: HttpModuleReporter,
    tmp_path: Path,
    behaviour: str,
) -> None:
    """stations.boot: register with the flashed config, then the runtime reports with the same key."""
    rid = f"sn-boot{next(_ids)}-mac-bb"
    key = SecretKey.generate()
    spec = IndividualEnrollmentSpec(rid, key, SecretKey.generate())
    with HttpDpsClient.from_connection_string(emulator.service_connection_string) as dps:
        assert dps.ensure_individual_enrollments([spec]) == {rid: None}
    rendered = render(ProvisioningConfig(emulator.device_endpoint, emulator.id_scope, rid, key), "1.2")
    flashed = tmp_path / "config.toml"
    flashed.write_bytes(rendered.content)
    registrar = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    try:
        result = boot(flashed, registrar, timeout=20, runtime=SimulatedEdgeRuntime(reporter, behaviour))
    finally:
        registrar.close()
    assert result.status == "assigned"
    twin = registry.get_module_twin(HUB, rid, "$edgeAgent")
    assert twin is not None
    running = twin.reported.get("systemModules", {}).get("edgeAgent", {}).get("runtimeStatus")
    assert running == ("running" if behaviour == "running" else None)
