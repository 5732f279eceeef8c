"""Enrollment records: validate what clients PUT, fill in what DPS fills in, shape what DPS returns.

Responsible for: the IndividualEnrollment / EnrollmentGroup schemas of azure-notes §1.4 (exact field names),
64-byte key generation when keys are null or absent, timestamps and a new ETag on every write,
omitting null fields except `provisioningStatus`, and stripping keys from GET and query answers (§1.5).
Not responsible for: storage or preconditions (store) and HTTP (service_api).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.emulator.wire import JsonObject, bad_request, drop_nulls, new_etag, utc_timestamp

ID_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?$")
ATTESTATION_TYPES = ("none", "tpm", "x509", "symmetricKey")
ALLOCATION_POLICIES = ("hashed", "geoLatency", "static", "custom")
PROVISIONING_STATUSES = (None, "enabled", "disabled")

COMMON_FIELDS = (
    "attestation",
    "capabilities",
    "iotHubHostName",
    "initialTwin",
    "provisioningStatus",
    "reprovisionPolicy",
    "allocationPolicy",
    "iotHubs",
    "customAllocationDefinition",
)
INDIVIDUAL_FIELDS = ("registrationId", "deviceId", "optionalDeviceInformation", *COMMON_FIELDS)
GROUP_FIELDS = ("enrollmentGroupId", *COMMON_FIELDS)


def check_id(value: Any, what: str) -> str:
    """Validate an enrollment / registration id (azure-notes §2.4); 400 naming the field otherwise."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise bad_request(
            f"{what} must be 1-128 characters: letters, digits and '-', '.', '_', ':' "
            "(starting with a letter or digit)."
        )
    return value


def _check_key(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{what} must be a base64 string.")
    try:
        SecretKey.from_base64(value, what=what)
    except KeyFormatError as exc:
        raise bad_request(str(exc)) from None
    return value


def _symmetric_key(attestation: JsonObject) -> JsonObject:
    given = attestation.get("symmetricKey") or {}
    if not isinstance(given, dict):
        raise bad_request("attestation.symmetricKey must be an object.")
    keys: JsonObject = {}
    for name in ("primaryKey", "secondaryKey"):
        value = given.get(name)
        keys[name] = (
            SecretKey.generate().reveal_base64()
            if value is None
            else _check_key(value, f"attestation.symmetricKey.{name}")
        )
    return keys


def normalize_attestation(value: Any) -> JsonObject:
    """Validate an AttestationMechanism; generate symmetric keys that are null or absent."""
    if not isinstance(value, dict) or value.get("type") not in ATTESTATION_TYPES:
        raise bad_request(f"attestation.type must be one of {', '.join(ATTESTATION_TYPES)}.")
    attestation: JsonObject = {name: val for name, val in value.items() if val is not None}
    if attestation["type"] == "symmetricKey":
        attestation["symmetricKey"] = _symmetric_key(value)
    return attestation


# IoT Hub device IDs (azure-notes §2.4): case-sensitive, at most 128 ASCII characters, letters, digits and
# - . % _ * ? ! ( ) , : = @ $ ' ; '+' and '#' are not supported.
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")


def check_device_id(value: Any) -> None:
    """Validate an individual enrollment's optional `deviceId` as IoT Hub would; 400 naming the rule."""
    if value is None:
        return
    if not isinstance(value, str) or not DEVICE_ID_PATTERN.fullmatch(value):
        raise bad_request(
            "deviceId must be 1-128 ASCII characters: letters, digits and - . % _ * ? ! ( ) , : = @ $ ' "
            "('+' and '#' are not supported by IoT Hub)."
        )


def _check_common(body: JsonObject) -> None:
    if body.get("provisioningStatus") not in PROVISIONING_STATUSES:
        raise bad_request("provisioningStatus must be 'enabled' or 'disabled'.")
    if body.get("allocationPolicy") not in (None, *ALLOCATION_POLICIES):
        raise bad_request(f"allocationPolicy must be one of {', '.join(ALLOCATION_POLICIES)}.")
    hubs = body.get("iotHubs")
    if hubs is not None and not (isinstance(hubs, list) and all(isinstance(h, str) for h in hubs)):
        raise bad_request("iotHubs must be a list of IoT hub host names.")
    capabilities = body.get("capabilities")
    if capabilities is not None and not isinstance(capabilities, dict):
        raise bad_request('capabilities must be an object like {"iotEdge": true}.')


def build_record(body: Any, id_field: str, path_id: str, existing: JsonObject | None) -> JsonObject:
    """Turn a PUT body into the stored record (keys included, nulls dropped except provisioningStatus)."""
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object.")
    if str(body.get(id_field, "")).lower() != path_id.lower():
        raise bad_request(f"{id_field} in the body must match the id in the URI.")
    _check_common(body)
    if id_field == "registrationId":
        check_device_id(body.get("deviceId"))
    fields = INDIVIDUAL_FIELDS if id_field == "registrationId" else GROUP_FIELDS
    record: JsonObject = {name: body.get(name) for name in fields}
    record[id_field] = existing[id_field] if existing else body[id_field]
    record["attestation"] = normalize_attestation(body.get("attestation"))
    now = utc_timestamp()
    record["createdDateTimeUtc"] = existing["createdDateTimeUtc"] if existing else now
    record["lastUpdatedDateTimeUtc"] = now
    record["etag"] = new_etag()
    return drop_nulls(record)


def without_keys(record: JsonObject) -> JsonObject:
    """A copy safe for GET and query answers: symmetric keys removed (azure-notes §1.5)."""
    shown = dict(record)
    attestation = dict(shown.get("attestation") or {})
    attestation.pop("symmetricKey", None)
    shown["attestation"] = attestation
    return shown


def attestation_with_keys(record: JsonObject) -> JsonObject:
    """The AttestationMechanism with keys, for `POST .../attestationmechanism`."""
    return dict(record["attestation"])


def is_enabled(record: JsonObject) -> bool:
    """Null or absent provisioningStatus counts as enabled (spec default; azure-notes §1.5)."""
    return record.get("provisioningStatus") in (None, "enabled")


def symmetric_keys(record: JsonObject) -> list[SecretKey]:
    """The record's primary and secondary keys, if it is a symmetric-key enrollment."""
    attestation = record.get("attestation") or {}
    if attestation.get("type") != "symmetricKey":
        return []
    keys = attestation.get("symmetricKey") or {}
    return [SecretKey.from_base64(keys[name]) for name in ("primaryKey", "secondaryKey") if keys.get(name)]
