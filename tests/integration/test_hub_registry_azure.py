"""AzureHubRegistry (azure-iot-hub's IoTHubRegistryManager) against the emulator's HTTPS IoT hub part."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.azure.ports import AzureError, IndividualEnrollmentSpec
from pipeline.domain.keys import SecretKey
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

HUB = "edgeline-hub-1.azure-devices.net"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    emu = start_emulator(EmulatorConfig(host="127.0.0.1", port=0, hubs=(HUB,)))
    yield emu
    emu.stop()


@pytest.fixture
def registry(emulator: RunningEmulator) -> Iterator[AzureHubRegistry]:
    hubs = AzureHubRegistry({HUB: emulator.hub_connection_string(HUB)}, verify=emulator.ca_file)
    yield hubs
    hubs.close()


def provision(emulator: RunningEmulator, registration_id: str, *, iot_edge: bool = True) -> None:
    spec = IndividualEnrollmentSpec(
        registration_id, SecretKey.generate(), SecretKey.generate(), iot_edge=iot_edge, tags={"line": "L1"}
    )
    with HttpDpsClient.from_connection_string(emulator.service_connection_string) as dps:
        assert dps.ensure_individual_enrollments([spec]) == {registration_id: None}
    registrar = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    result = registrar.register(
        global_endpoint=emulator.device_endpoint,
        id_scope=emulator.id_scope,
        registration_id=registration_id,
        key=spec.primary_key,
        timeout=20,
    )
    registrar.close()
    assert (result.status, result.assigned_hub) == ("assigned", HUB)


def test_get_device_reads_identity_and_initial_twin_tags(
    emulator: RunningEmulator, registry: AzureHubRegistry
) -> None:
    provision(emulator, "sn-1-mac-aa")
    device = registry.get_device(HUB, "sn-1-mac-aa")
    assert device is not None
    assert (device.device_id, device.iot_edge, device.status) == ("sn-1-mac-aa", True, "enabled")
    assert device.tags == {"line": "L1"}


def test_non_edge_device_is_reported_as_such(emulator: RunningEmulator, registry: AzureHubRegistry) -> None:
    provision(emulator, "sn-2-mac-bb", iot_edge=False)
    device = registry.get_device(HUB.upper(), "sn-2-mac-bb")
    assert device is not None and not device.iot_edge


def test_unknown_device_is_none(registry: AzureHubRegistry) -> None:
    assert registry.get_device(HUB, "never-registered") is None


def test_update_twin_tags_merges(emulator: RunningEmulator, registry: AzureHubRegistry) -> None:
    provision(emulator, "sn-3-mac-cc")
    registry.update_twin_tags(HUB, "sn-3-mac-cc", {"station": "S1", "batch": "B7"})
    device = registry.get_device(HUB, "sn-3-mac-cc")
    assert device is not None and device.tags == {"line": "L1", "station": "S1", "batch": "B7"}


def test_update_twin_of_unknown_device_is_an_azure_error(registry: AzureHubRegistry) -> None:
    with pytest.raises(AzureError) as caught:
        registry.update_twin_tags(HUB, "never-registered", {"a": 1})
    assert caught.value.status == 404 and not caught.value.retryable


def test_wrong_hub_key_is_refused(emulator: RunningEmulator) -> None:
    good = emulator.hub_connection_string(HUB)
    bad = good.rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + SecretKey.generate().reveal_base64()
    registry = AzureHubRegistry({HUB: bad}, verify=emulator.ca_file)
    with pytest.raises(AzureError) as caught:
        registry.get_device(HUB, "any")
    assert caught.value.status == 401


def test_set_device_status_disables_and_enables_keeping_the_identity(
    emulator: RunningEmulator, registry: AzureHubRegistry
) -> None:
    provision(emulator, "sn-4-mac-dd")

    assert registry.set_device_status(HUB, "sn-4-mac-dd", enabled=False, reason="RMA 12") is True
    device = registry.get_device(HUB, "sn-4-mac-dd")
    assert device is not None
    assert (device.status, device.iot_edge, device.tags) == ("disabled", True, {"line": "L1"})

    assert registry.set_device_status(HUB, "sn-4-mac-dd", enabled=True) is True
    device = registry.get_device(HUB, "sn-4-mac-dd")
    assert device is not None and device.status == "enabled"


def test_set_device_status_of_unknown_device_is_false(registry: AzureHubRegistry) -> None:
    assert registry.set_device_status(HUB, "never-registered", enabled=False) is False
