"""DPS JSON bodies (azure-notes §1.4): building enrollments from specs and parsing what DPS returns. Pure.

Responsible for: exact field names and shapes of IndividualEnrollment, EnrollmentGroup,
AttestationMechanism, DeviceRegistrationState and BulkEnrollmentOperationResult.
Not responsible for: HTTP, retries, or deciding what a conflict means (see `pipeline.azure.dps_service`).
Bodies built here contain keys: they are handed to the HTTP client and never logged or repr'd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.azure.ports import (
    EnrollmentGroupSpec,
    EnrollmentInfo,
    IndividualEnrollmentSpec,
    RegistrationState,
)
from pipeline.domain.keys import KeyFormatError, SecretKey

# DPS echoes these on GET; they must not be sent back on PUT (readOnly in the spec, azure-notes §1.4).
READ_ONLY_FIELDS = ("registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag")
# Re-provision and migrate data: the portal's default for new enrollments (azure-notes §2.7).
REPROVISION_POLICY = {"updateHubAssignment": True, "migrateDeviceData": True}


class BodyError(ValueError):
    """A DPS response that does not have the documented shape."""


def symmetric_key_attestation(primary: SecretKey, secondary: SecretKey) -> dict[str, Any]:
    """Build an AttestationMechanism of type symmetricKey."""
    keys = {"primaryKey": primary.reveal_base64(), "secondaryKey": secondary.reveal_base64()}
    return {"type": "symmetricKey", "symmetricKey": keys}


def _common_fields(
    iot_edge: bool, iot_hubs: tuple[str, ...], allocation_policy: str | None, provisioning_status: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "capabilities": {"iotEdge": iot_edge},
        "provisioningStatus": provisioning_status,
        "reprovisionPolicy": dict(REPROVISION_POLICY),
    }
    if allocation_policy is not None:
        body["allocationPolicy"] = allocation_policy
    if iot_hubs:
        body["iotHubs"] = list(iot_hubs)
    return body


def individual_enrollment_body(spec: IndividualEnrollmentSpec) -> dict[str, Any]:
    """Build the IndividualEnrollment JSON for `spec` (contains its keys)."""
    body: dict[str, Any] = {
        "registrationId": spec.registration_id,
        "attestation": symmetric_key_attestation(spec.primary_key, spec.secondary_key),
    }
    if spec.device_id is not None:
        body["deviceId"] = spec.device_id
    body.update(
        _common_fields(spec.iot_edge, spec.iot_hubs, spec.allocation_policy, spec.provisioning_status)
    )
    body["initialTwin"] = {"tags": dict(spec.tags), "properties": {"desired": {}}}
    return body


def enrollment_group_body(spec: EnrollmentGroupSpec) -> dict[str, Any]:
    """Build the EnrollmentGroup JSON for `spec` (contains its keys)."""
    body: dict[str, Any] = {
        "enrollmentGroupId": spec.group_id,
        "attestation": symmetric_key_attestation(spec.primary_key, spec.secondary_key),
    }
    body.update(
        _common_fields(spec.iot_edge, spec.iot_hubs, spec.allocation_policy, spec.provisioning_status)
    )
    return body


def resend_body(raw: dict[str, Any], attestation: dict[str, Any], provisioning_status: str) -> dict[str, Any]:
    """Rebuild a PUT body from a GET result: drop read-only fields, put the keys back, set the status."""
    body = {k: v for k, v in raw.items() if k not in READ_ONLY_FIELDS and v is not None}
    body["attestation"] = attestation
    body["provisioningStatus"] = provisioning_status
    return body


@dataclass(frozen=True, slots=True)
class SymmetricKeys:
    """The two keys from an AttestationMechanism response."""

    primary: SecretKey | None
    secondary: SecretKey | None

    def matches(self, primary: SecretKey, secondary: SecretKey) -> bool:
        """Whether both keys equal ours (constant-time compares)."""
        return self.primary == primary and self.secondary == secondary


def parse_symmetric_keys(body: Any) -> SymmetricKeys | None:
    """Parse `{"type":"symmetricKey","symmetricKey":{...}}`; None if the attestation is another type."""
    if not isinstance(body, dict):
        raise BodyError("attestation mechanism is not a JSON object")
    if body.get("type") != "symmetricKey":
        return None
    keys = body.get("symmetricKey") or {}
    if not isinstance(keys, dict):
        raise BodyError("attestation symmetricKey is not an object")
    return SymmetricKeys(
        _key_or_none(keys.get("primaryKey"), "primaryKey"),
        _key_or_none(keys.get("secondaryKey"), "secondaryKey"),
    )


def _key_or_none(value: Any, what: str) -> SecretKey | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return SecretKey.from_base64(value, what=f"DPS {what}")
    except KeyFormatError:
        return None


def parse_enrollment_info(body: Any, *, id_field: str) -> EnrollmentInfo:
    """Parse an IndividualEnrollment (id_field `registrationId`) or EnrollmentGroup (`enrollmentGroupId`)."""
    if not isinstance(body, dict) or not isinstance(body.get(id_field), str):
        raise BodyError(f"enrollment response has no {id_field}")
    capabilities = body.get("capabilities") or {}
    return EnrollmentInfo(
        enrollment_id=body[id_field],
        provisioning_status=body.get("provisioningStatus"),
        etag=body.get("etag"),
        iot_edge=bool(isinstance(capabilities, dict) and capabilities.get("iotEdge")),
        raw=body,
    )


def parse_registration_state(body: Any) -> RegistrationState:
    """Parse a DeviceRegistrationState."""
    if not isinstance(body, dict) or not isinstance(body.get("registrationId"), str):
        raise BodyError("registration state has no registrationId")
    code = body.get("errorCode")
    return RegistrationState(
        registration_id=body["registrationId"],
        status=str(body.get("status") or "unassigned"),
        assigned_hub=body.get("assignedHub"),
        device_id=body.get("deviceId"),
        substatus=body.get("substatus"),
        error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        error_message=body.get("errorMessage"),
    )


@dataclass(frozen=True, slots=True)
class BulkItemError:
    """One per-item error of a BulkEnrollmentOperationResult."""

    registration_id: str
    error_code: int | None
    error_status: str


def parse_bulk_errors(body: Any) -> list[BulkItemError]:
    """Parse `{"isSuccessful":bool,"errors":[{registrationId,errorCode,errorStatus}]}` into its errors."""
    if not isinstance(body, dict) or not isinstance(body.get("isSuccessful"), bool):
        raise BodyError("bulk operation result has no isSuccessful")
    errors = []
    for item in body.get("errors") or []:
        if not isinstance(item, dict) or not isinstance(item.get("registrationId"), str):
            raise BodyError("bulk operation error item has no registrationId")
        code = item.get("errorCode")
        errors.append(
            BulkItemError(
                item["registrationId"],
                code if isinstance(code, int) and not isinstance(code, bool) else None,
                str(item.get("errorStatus") or ""),
            )
        )
    return errors
