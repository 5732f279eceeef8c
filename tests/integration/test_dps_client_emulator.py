"""HttpDpsClient and HttpDeviceRegistrar against the DPS emulator over real HTTP (no mocks).

The emulator validates SAS tokens exactly as azure-notes §1.8/§2.2 describe, so these tests also prove our
tokens are right.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.pacing import Backoff
from pipeline.azure.ports import AzureError, EnrollmentConflict, EnrollmentGroupSpec, IndividualEnrollmentSpec
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

HUB = "edgeline-hub-1.azure-devices.net"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    emu = start_emulator(
        EmulatorConfig(
            host="127.0.0.1", port=0, id_scope="0ne00000001", hubs=(HUB,), allocation_policy="hashed"
        )
    )
    yield emu
    emu.stop()


@pytest.fixture
def dps(emulator: RunningEmulator) -> Iterator[HttpDpsClient]:
    with HttpDpsClient.from_connection_string(emulator.service_connection_string) as client:
        yield client


@pytest.fixture
def device() -> Iterator[HttpDeviceRegistrar]:
    registrar = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield registrar
    registrar.close()


def unit(n: int, line: str = "L1") -> IndividualEnrollmentSpec:
    return IndividualEnrollmentSpec(
        f"sn-{n:04d}-mac-00-11-22-33-44-{n % 100:02d}",
        SecretKey.generate(),
        SecretKey.generate(),
        tags={"line": line, "n": n},
    )


def register(
    device: HttpDeviceRegistrar, emulator: RunningEmulator, registration_id: str, key: SecretKey
) -> str:
    return device.register(
        global_endpoint=emulator.device_endpoint,
        id_scope=emulator.id_scope,
        registration_id=registration_id,
        key=key,
        timeout=20,
    ).status


def test_group_create_is_idempotent(dps: HttpDpsClient) -> None:
    group = EnrollmentGroupSpec("line-1", SecretKey.generate(), SecretKey.generate())
    dps.ensure_enrollment_group(group)
    first = dps.get_enrollment_group("line-1")
    dps.ensure_enrollment_group(group)
    again = dps.get_enrollment_group("line-1")
    assert first is not None and again is not None
    assert first.etag == again.etag  # the replay did not rewrite the group
    assert again.iot_edge and again.provisioning_status == "enabled"


def test_group_with_another_key_is_a_conflict(dps: HttpDpsClient) -> None:
    dps.ensure_enrollment_group(EnrollmentGroupSpec("line-1", SecretKey.generate(), SecretKey.generate()))
    with pytest.raises(EnrollmentConflict):
        dps.ensure_enrollment_group(EnrollmentGroupSpec("line-1", SecretKey.generate(), SecretKey.generate()))


def test_bulk_create_of_25_units_is_idempotent_on_replay(dps: HttpDpsClient) -> None:
    specs = [unit(n) for n in range(25)]
    assert dps.ensure_individual_enrollments(specs) == {s.registration_id: None for s in specs}
    assert dps.ensure_individual_enrollments(specs) == {s.registration_id: None for s in specs}
    info = dps.get_individual_enrollment(specs[24].registration_id)
    assert info is not None and info.iot_edge and info.raw["initialTwin"]["tags"]["n"] == 24


def test_different_key_on_replay_is_a_conflict_for_that_unit_only(dps: HttpDpsClient) -> None:
    specs = [unit(n) for n in range(3)]
    dps.ensure_individual_enrollments(specs)
    rogue = IndividualEnrollmentSpec(specs[1].registration_id, SecretKey.generate(), SecretKey.generate())
    results = dps.ensure_individual_enrollments([specs[0], rogue, specs[2]])
    assert results[specs[0].registration_id] is None and results[specs[2].registration_id] is None
    assert isinstance(results[rogue.registration_id], EnrollmentConflict)
    assert rogue.primary_key.reveal_base64() not in str(results[rogue.registration_id])


def test_registration_state_after_the_device_registers(
    dps: HttpDpsClient, device: HttpDeviceRegistrar, emulator: RunningEmulator
) -> None:
    spec = unit(7)
    dps.ensure_individual_enrollments([spec])
    assert dps.get_registration_state(spec.registration_id) is None
    result = device.register(
        global_endpoint=emulator.device_endpoint,
        id_scope=emulator.id_scope,
        registration_id=spec.registration_id,
        key=spec.primary_key,
        timeout=20,
    )
    assert (result.status, result.assigned_hub, result.device_id) == ("assigned", HUB, spec.registration_id)
    state = dps.get_registration_state(spec.registration_id)
    assert state is not None and (state.status, state.assigned_hub) == ("assigned", HUB)


def test_group_registration_query_pages(
    dps: HttpDpsClient, device: HttpDeviceRegistrar, emulator: RunningEmulator
) -> None:
    group = EnrollmentGroupSpec("line-2", SecretKey.generate(), SecretKey.generate())
    dps.ensure_enrollment_group(group)
    ids = [f"sn-{n:04d}-mac-aa-bb-cc-dd-ee-{n:02d}" for n in range(7)]
    for registration_id in ids:
        assert (
            register(device, emulator, registration_id, derive_device_key(group.primary_key, registration_id))
            == "assigned"
        )
    states = dps.query_group_registrations("line-2", page_size=3)
    assert sorted(s.registration_id for s in states) == sorted(ids)
    assert {s.status for s in states} == {"assigned"}


def test_disabled_enrollment_answers_disabled_to_the_device(
    dps: HttpDpsClient, device: HttpDeviceRegistrar, emulator: RunningEmulator
) -> None:
    spec = unit(9)
    dps.ensure_individual_enrollments([spec])
    dps.set_individual_enrollment_status(spec.registration_id, "disabled")
    dps.set_individual_enrollment_status(spec.registration_id, "disabled")  # idempotent
    info = dps.get_individual_enrollment(spec.registration_id)
    assert info is not None and info.provisioning_status == "disabled"
    assert register(device, emulator, spec.registration_id, spec.primary_key) == "disabled"
    dps.set_individual_enrollment_status(spec.registration_id, "enabled")  # keys survived the round trip
    assert register(device, emulator, spec.registration_id, spec.primary_key) == "assigned"


def test_delete_is_idempotent(dps: HttpDpsClient) -> None:
    spec = unit(3)
    dps.ensure_individual_enrollments([spec])
    dps.delete_individual_enrollment(spec.registration_id)
    dps.delete_individual_enrollment(spec.registration_id)
    assert dps.get_individual_enrollment(spec.registration_id) is None


def test_wrong_device_key_is_refused(
    dps: HttpDpsClient, device: HttpDeviceRegistrar, emulator: RunningEmulator
) -> None:
    spec = unit(4)
    dps.ensure_individual_enrollments([spec])
    with pytest.raises(AzureError) as caught:
        register(device, emulator, spec.registration_id, SecretKey.generate())
    assert caught.value.status == 401 and not caught.value.retryable


def test_throttling_is_retried_and_surfaces_as_retryable(emulator: RunningEmulator) -> None:
    sleeps: list[float] = []
    with HttpDpsClient.from_connection_string(
        emulator.service_connection_string, sleep=sleeps.append, backoff=Backoff(max_attempts=3)
    ) as dps:
        emulator.set_faults(throttle=True)
        with pytest.raises(AzureError) as caught:
            dps.get_individual_enrollment("sn-1")
        emulator.set_faults()
        assert dps.get_individual_enrollment("sn-1") is None
    assert caught.value.status == 429 and caught.value.retryable
    assert len(sleeps) == 2 and all(s >= 1.0 for s in sleeps)  # Retry-After honoured


def test_wrong_service_key_is_refused(emulator: RunningEmulator) -> None:
    cs = emulator.service_connection_string.rsplit("SharedAccessKey=", 1)[0]
    with (
        HttpDpsClient.from_connection_string(
            cs + "SharedAccessKey=" + SecretKey.generate().reveal_base64()
        ) as dps,
        pytest.raises(AzureError) as caught,
    ):
        dps.get_enrollment_group("line-1")
    assert caught.value.status == 401 and caught.value.error_code is not None
