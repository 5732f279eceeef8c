"""DPS JSON bodies: built from specs with azure-notes §1.4 field names, parsed from recorded responses."""

from __future__ import annotations

import pytest

from pipeline.azure import dps_bodies as bodies
from pipeline.azure.ports import EnrollmentGroupSpec, IndividualEnrollmentSpec
from pipeline.domain.keys import SecretKey

PRIMARY = SecretKey(b"p" * 32)
SECONDARY = SecretKey(b"s" * 32)


def test_individual_enrollment_body_has_the_documented_shape() -> None:
    spec = IndividualEnrollmentSpec(
        "sn-1-mac-aa",
        PRIMARY,
        SECONDARY,
        device_id="dev-1",
        tags={"line": "L3"},
        iot_hubs=("hub1.azure-devices.net",),
        allocation_policy="static",
    )
    assert bodies.individual_enrollment_body(spec) == {
        "registrationId": "sn-1-mac-aa",
        "deviceId": "dev-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {
                "primaryKey": PRIMARY.reveal_base64(),
                "secondaryKey": SECONDARY.reveal_base64(),
            },
        },
        "capabilities": {"iotEdge": True},
        "initialTwin": {"tags": {"line": "L3"}, "properties": {"desired": {}}},
        "provisioningStatus": "enabled",
        "allocationPolicy": "static",
        "iotHubs": ["hub1.azure-devices.net"],
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
    }


def test_optional_fields_are_left_out_rather_than_sent_as_null() -> None:
    body = bodies.individual_enrollment_body(IndividualEnrollmentSpec("r", PRIMARY, SECONDARY))
    assert "deviceId" not in body and "iotHubs" not in body and "allocationPolicy" not in body


def test_enrollment_group_body() -> None:
    body = bodies.enrollment_group_body(
        EnrollmentGroupSpec("line-3", PRIMARY, SECONDARY, iot_edge=False, provisioning_status="disabled")
    )
    assert body["enrollmentGroupId"] == "line-3"
    assert body["capabilities"] == {"iotEdge": False}
    assert body["provisioningStatus"] == "disabled"
    assert "registrationId" not in body and "initialTwin" not in body


def test_resend_body_drops_read_only_fields_and_restores_keys() -> None:
    raw = {
        "registrationId": "r",
        "attestation": {"type": "symmetricKey"},
        "etag": "IjEi",
        "createdDateTimeUtc": "2023-04-20T20:37:04.8033329Z",
        "lastUpdatedDateTimeUtc": "x",
        "registrationState": {"registrationId": "r", "status": "unassigned"},
        "provisioningStatus": None,
        "capabilities": {"iotEdge": True},
    }
    attestation = bodies.symmetric_key_attestation(PRIMARY, SECONDARY)
    assert bodies.resend_body(raw, attestation, "disabled") == {
        "registrationId": "r",
        "attestation": attestation,
        "provisioningStatus": "disabled",
        "capabilities": {"iotEdge": True},
    }


def test_parse_symmetric_keys_from_attestation_mechanism() -> None:
    keys = bodies.parse_symmetric_keys(bodies.symmetric_key_attestation(PRIMARY, SECONDARY))
    assert keys is not None and keys.matches(PRIMARY, SECONDARY)
    assert not keys.matches(SECONDARY, PRIMARY)
    assert bodies.parse_symmetric_keys({"type": "x509", "x509": {}}) is None
    with pytest.raises(bodies.BodyError):
        bodies.parse_symmetric_keys([])


def test_symmetric_keys_repr_does_not_show_the_key() -> None:
    keys = bodies.parse_symmetric_keys(bodies.symmetric_key_attestation(PRIMARY, SECONDARY))
    assert PRIMARY.reveal_base64() not in repr(keys)


def test_parse_enrollment_info_from_a_recorded_get() -> None:
    recorded = {
        "registrationId": "sym_enrollment_ebd84717",
        "attestation": {"type": "symmetricKey"},
        "capabilities": {"iotEdge": True},
        "etag": "IjNiMDA0YjM2LTAwMDAtMDgwMC0wMDAwLTY0NDFhMjcwMDAwMCI=",
        "provisioningStatus": None,
        "registrationState": {"registrationId": "sym_enrollment_ebd84717", "status": "unassigned"},
    }
    info = bodies.parse_enrollment_info(recorded, id_field="registrationId")
    assert (info.enrollment_id, info.provisioning_status, info.iot_edge) == (
        "sym_enrollment_ebd84717",
        None,
        True,
    )
    assert info.etag == recorded["etag"]
    with pytest.raises(bodies.BodyError):
        bodies.parse_enrollment_info(recorded, id_field="enrollmentGroupId")


def test_parse_registration_state_from_the_documented_example() -> None:
    state = bodies.parse_registration_state(
        {
            "registrationId": "my-symkey-device",
            "createdDateTimeUtc": "2022-08-31T22:02:50.5163352Z",
            "assignedHub": "MyExampleHub.azure-devices.net",
            "deviceId": "my-symkey-device",
            "status": "assigned",
            "substatus": "initialAssignment",
            "lastUpdatedDateTimeUtc": "2022-08-31T22:02:50.7370676Z",
            "etag": "IjY5MDAzNTUyLTAwMDAtMDMwMC0wMDAwLTYzMGZkYThhMDAwMCI=",
        }
    )
    assert state.status == "assigned" and state.assigned_hub == "MyExampleHub.azure-devices.net"
    assert state.substatus == "initialAssignment" and state.error_code is None
    failed = bodies.parse_registration_state(
        {"registrationId": "r", "status": "failed", "errorCode": 400208, "errorMessage": "no hub"}
    )
    assert (failed.error_code, failed.error_message) == (400208, "no hub")


def test_parse_bulk_errors_from_the_recorded_result() -> None:
    recorded = {
        "errors": [{"registrationId": "a", "errorCode": 409201, "errorStatus": "Enrollment already exists."}],
        "isSuccessful": False,
    }
    assert bodies.parse_bulk_errors(recorded) == [
        bodies.BulkItemError("a", 409201, "Enrollment already exists.")
    ]
    assert bodies.parse_bulk_errors({"errors": [], "isSuccessful": True}) == []
    with pytest.raises(bodies.BodyError):
        bodies.parse_bulk_errors({"errors": []})
