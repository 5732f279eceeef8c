"""Device attestation, hub allocation and registration outcomes: the core of DPS's device side.

Responsible for: individual-before-group precedence with the right keys (an individual enrollment's
own keys only; a group's keys derived per registration id, azure-notes §2.3), hub choice (static, hashed;
sticky re-registration per reprovision policy, §2.4, §2.7), the final registrationState (assigned /
failed 400208 / disabled), and, once an operation is due, writing the record and the hub identity.
Not responsible for: HTTP and token parsing (device_api, auth).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass

from pipeline.azure.sas import ParsedToken
from pipeline.domain.keys import SecretKey, derive_device_key
from pipeline.emulator import records
from pipeline.emulator.auth import first_matching_key, unauthorized
from pipeline.emulator.hub_registry import HubDeviceRecord, HubRegistry
from pipeline.emulator.store import GROUP_MARKER, DpsState, Operation
from pipeline.emulator.wire import NO_HUB, JsonObject, new_etag, new_operation_id, utc_timestamp


@dataclass(frozen=True, slots=True)
class Attested:
    """Which enrollment vouched for a device, and the device's own key pair (for its hub identity)."""

    enrollment: JsonObject
    group_id: str | None
    device_keys: tuple[SecretKey, ...]


def stable_index(registration_id: str, count: int) -> int:
    """A hash of the registration id that is the same in every process (unlike `hash()`)."""
    digest = hashlib.sha256(registration_id.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def candidate_hubs(enrollment: JsonObject, linked: tuple[str, ...]) -> list[str]:
    """The enrollment's hubs that are linked, else all linked hubs (azure-notes §2.4)."""
    listed = enrollment.get("iotHubs") or (
        [enrollment["iotHubHostName"]] if enrollment.get("iotHubHostName") else []
    )
    if not listed:
        return list(linked)
    linked_lower = {hub.lower(): hub for hub in linked}
    return [linked_lower[hub.lower()] for hub in listed if hub.lower() in linked_lower]


def choose_hub(
    enrollment: JsonObject, registration_id: str, linked: tuple[str, ...], default_policy: str
) -> str | None:
    """Apply the enrollment's allocation policy (else the service's); None when no hub fits."""
    hubs = candidate_hubs(enrollment, linked)
    policy = enrollment.get("allocationPolicy") or default_policy
    if not hubs or policy == "custom":
        return None
    if policy == "static":
        explicit = bool(enrollment.get("iotHubs") or enrollment.get("iotHubHostName"))
        return hubs[0] if explicit or len(hubs) == 1 else None
    return hubs[stable_index(registration_id, len(hubs))]  # hashed; geoLatency has no geography here


class Provisioner:
    """Attests devices, decides outcomes, and settles operations once `assign_delay` has passed."""

    def __init__(
        self, state: DpsState, hubs: HubRegistry, linked: tuple[str, ...], policy: str, delay: float
    ) -> None:
        self.state = state
        self.hubs = hubs
        self.linked = linked
        self.policy = policy
        self.delay = delay
        # settle() runs before every read: it must not walk every operation of the last 10 minutes.
        self._due: list[tuple[float, int, str]] = []  # heap of (ready_at, n, operation id) not settled
        self._by_age: deque[tuple[float, str]] = deque()  # (ready_at, operation id) in creation order
        self._count = itertools.count()

    def attest(self, token: ParsedToken, registration_id: str) -> Attested:
        """Find the enrollment whose key signed the token; 401 if none does."""
        with self.state.lock:
            individual = self.state.enrollments.get(registration_id)
            if individual is not None:
                keys = records.symmetric_keys(individual)
                if first_matching_key(token, keys) is None:
                    raise unauthorized(
                        "token not signed with the individual enrollment's primary or secondary key"
                    )
                return Attested(individual, None, tuple(keys))
            for group in self.state.groups.values():
                derived = [derive_device_key(key, registration_id) for key in records.symmetric_keys(group)]
                if first_matching_key(token, derived) is not None:
                    return Attested(group, group["enrollmentGroupId"], tuple(derived))
        raise unauthorized("no enrollment matches this registration id and key")

    def register(self, registration_id: str, attested: Attested) -> Operation:
        """Start a registration: record it as assigning, decide its outcome, return the operation."""
        with self.state.lock:
            previous = self.state.registrations.get(registration_id)
            outcome = self._outcome(registration_id, attested, previous)
            record = {**outcome, "status": "assigning", "lastUpdatedDateTimeUtc": utc_timestamp()}
            for name in ("assignedHub", "substatus", "errorCode", "errorMessage"):
                record.pop(name, None)
            self.state.registrations.put(registration_id, record)
            operation = Operation(new_operation_id(), registration_id, time.monotonic() + self.delay, outcome)
            operation.on_settle = self._hub_action(outcome, attested, previous)
            self.state.operations[operation.operation_id] = operation
            heapq.heappush(self._due, (operation.ready_at, next(self._count), operation.operation_id))
            self._by_age.append((operation.ready_at, operation.operation_id))
            return operation

    def settle(self) -> None:
        """Complete every operation whose time has come (called before any read of the results)."""
        now = time.monotonic()
        with self.state.lock:
            operations = self.state.operations
            while self._by_age and self._by_age[0][0] < now - 600:
                operations.pop(self._by_age.popleft()[1], None)  # nobody polls one for 10 minutes
            while self._due and self._due[0][0] <= now:
                operation = operations.get(heapq.heappop(self._due)[2])
                if operation is None or operation.settled:
                    continue  # forgotten (reset) or settled already
                operation.settled = True
                operation.outcome["lastUpdatedDateTimeUtc"] = utc_timestamp()
                operation.outcome["etag"] = new_etag()
                self.state.registrations.put(operation.registration_id, dict(operation.outcome))
                if operation.on_settle is not None:
                    operation.on_settle()

    def _outcome(self, registration_id: str, attested: Attested, previous: JsonObject | None) -> JsonObject:
        enrollment = attested.enrollment
        base: JsonObject = {
            "registrationId": registration_id,
            "createdDateTimeUtc": previous["createdDateTimeUtc"] if previous else utc_timestamp(),
        }
        if attested.group_id is not None:
            base[GROUP_MARKER] = attested.group_id
        if not records.is_enabled(enrollment):
            return {**base, "status": "disabled"}
        hub = self._sticky_hub(enrollment, previous) or choose_hub(
            enrollment, registration_id, self.linked, self.policy
        )
        if hub is None:
            message = "No IoT hub is linked to this DPS or specified for this enrollment."
            return {**base, "status": "failed", "errorCode": NO_HUB, "errorMessage": message}
        device_id = enrollment.get("deviceId") or registration_id
        substatus = _substatus(previous, hub, enrollment)
        return {
            **base,
            "assignedHub": hub,
            "deviceId": device_id,
            "status": "assigned",
            "substatus": substatus,
        }

    def _sticky_hub(self, enrollment: JsonObject, previous: JsonObject | None) -> str | None:
        """Keep the previous hub when the policy says never re-assign (or is absent: legacy sticky)."""
        if (
            not previous
            or previous.get("status") != "assigned"
            or previous.get("assignedHub") not in self.linked
        ):
            return None
        policy = enrollment.get("reprovisionPolicy")
        if policy is None or not policy.get("updateHubAssignment", True):
            return str(previous["assignedHub"])
        return None

    def _hub_action(
        self, outcome: JsonObject, attested: Attested, previous: JsonObject | None
    ) -> _HubAction | None:
        if outcome.get("status") != "assigned":
            return None
        return _HubAction(self.hubs, outcome, attested, previous)


def _substatus(previous: JsonObject | None, hub: str, enrollment: JsonObject) -> str:
    if not previous or previous.get("status") != "assigned" or not previous.get("assignedHub"):
        return "initialAssignment"
    if str(previous["assignedHub"]).lower() == hub.lower():
        return str(previous.get("substatus") or "initialAssignment")
    migrate = (enrollment.get("reprovisionPolicy") or {}).get("migrateDeviceData", True)
    return "deviceDataMigrated" if migrate else "deviceDataReset"


@dataclass(slots=True)
class _HubAction:
    """Create (or move) the device identity and twin in the assigned hub."""

    hubs: HubRegistry
    outcome: JsonObject
    attested: Attested
    previous: JsonObject | None

    def __call__(self) -> None:
        hub, device_id = str(self.outcome["assignedHub"]), str(self.outcome["deviceId"])
        enrollment = self.attested.enrollment
        migrated = None
        old_hub = (self.previous or {}).get("assignedHub")
        if old_hub and str(old_hub).lower() != hub.lower():
            old_id = str((self.previous or {}).get("deviceId") or device_id)
            migrated = self.hubs.move(
                str(old_hub), hub, old_id, self.outcome["substatus"] == "deviceDataMigrated"
            )
        keys = [key.reveal_base64() for key in self.attested.device_keys] + ["", ""]
        record = migrated or HubDeviceRecord(device_id, False, keys[0], keys[1])
        record.device_id = device_id
        record.iot_edge = bool((enrollment.get("capabilities") or {}).get("iotEdge", False))
        self.hubs.provision(hub, record, None if migrated else enrollment.get("initialTwin"))
