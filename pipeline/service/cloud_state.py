"""`audit check`'s view of DPS and the IoT hub, on the DPS service client and the hub registry ports.

Responsible for: answering CloudState's questions with as few DPS operations as possible (a group's
registrations are read with its paged query, once). Not responsible for: judging (invariants) or HTTP
(pipeline.azure).
"""

from __future__ import annotations

from pipeline.azure.ports import DpsClient, EnrollmentInfo, HubDevice, HubRegistry, RegistrationState
from pipeline.service.invariants import CloudState, UnitFacts


class AzureCloudState(CloudState):
    """CloudState on the DPS service client and (if configured) the hub registry.

    Group units' registration states are read with the group's registration query, a page per
    operation, instead of one GET per unit (DPS operations are rate limited).
    """

    def __init__(self, dps: DpsClient, hub: HubRegistry | None) -> None:
        self._dps = dps
        self._hub = hub
        self.hub_checked = hub is not None
        self._groups: dict[str, dict[str, RegistrationState]] = {}
        self._group_exists: dict[str, bool] = {}

    def group_exists(self, group_id: str) -> bool:
        if group_id not in self._group_exists:
            self._group_exists[group_id] = self._dps.get_enrollment_group(group_id) is not None
        return self._group_exists[group_id]

    def registration(self, unit: UnitFacts) -> RegistrationState | None:
        if unit.mode != "group" or not unit.group_id:
            return self._dps.get_registration_state(unit.registration_id)
        if not self.group_exists(unit.group_id):
            return None
        if unit.group_id not in self._groups:
            states = self._dps.query_group_registrations(unit.group_id)
            self._groups[unit.group_id] = {s.registration_id: s for s in states}
        return self._groups[unit.group_id].get(unit.registration_id)

    def individual_enrollment(self, registration_id: str) -> EnrollmentInfo | None:
        return self._dps.get_individual_enrollment(registration_id)

    def hub_device(self, hub: str, device_id: str) -> HubDevice | None:
        return None if self._hub is None else self._hub.get_device(hub, device_id)
