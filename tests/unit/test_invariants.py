"""`edgeline audit check` rules on hand-made snapshots: each catches its violation, a clean line passes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.azure.ports import EnrollmentInfo, HubDevice, RegistrationState
from pipeline.service.invariants import CloudState, DbSnapshot, Transition, UnitFacts, check

RID = "sn-1-mac-02-00-00-00-00-01"
HUB = "hub-a.azure-devices.net"
SHA = "ab" * 32


class FakeCloud(CloudState):
    """DPS and the hub as dictionaries."""

    def __init__(self, hub_checked: bool = True) -> None:
        self.registrations: dict[str, RegistrationState] = {}
        self.enrollments: dict[str, EnrollmentInfo] = {}
        self.devices: set[tuple[str, str]] = set()
        self.groups = {"line-1"}
        self.hub_checked = hub_checked

    def group_exists(self, group_id: str) -> bool:
        return group_id in self.groups

    def registration(self, unit: UnitFacts) -> RegistrationState | None:
        return self.registrations.get(unit.registration_id)

    def individual_enrollment(self, registration_id: str) -> EnrollmentInfo | None:
        return self.enrollments.get(registration_id)

    def hub_device(self, hub: str, device_id: str) -> HubDevice | None:
        return HubDevice(device_id, True, "enabled", {}) if (hub, device_id) in self.devices else None


def _trail(*kinds: str, issued: str = SHA, read_back: str = SHA) -> tuple[Transition, ...]:
    details = {"unit.config_issued": {"config_sha256": issued}, "unit.flashed": {"config_sha256": read_back}}
    return tuple(Transition(i, k, details.get(k, {})) for i, k in enumerate(kinds, start=1))


FULL = ("unit.scanned", "unit.keyed", "unit.enrolled", "unit.config_issued", "unit.flashed", "unit.assigned")
ASSIGNED = UnitFacts(RID, "assigned", "individual", None, RID, HUB, SHA, "SN1", "02:00:00:00:00:01")


def _clean() -> tuple[DbSnapshot, FakeCloud]:
    cloud = FakeCloud()
    cloud.registrations[RID] = RegistrationState(RID, "assigned", HUB, RID)
    cloud.enrollments[RID] = EnrollmentInfo(RID, "enabled", '"1"', True, {})
    cloud.devices.add((HUB, RID))
    return DbSnapshot((ASSIGNED,), {RID: _trail(*FULL)}, 0, True), cloud


def _rules(snapshot: DbSnapshot, cloud: CloudState) -> list[str]:
    report = check(snapshot, cloud)
    assert all(v.problem and v.action for v in report.violations)
    assert report.ok == (not report.violations)
    return [v.rule for v in report.violations]


def test_a_clean_line_passes() -> None:
    snapshot, cloud = _clean()
    report = check(snapshot, cloud)
    assert report.ok and report.summary() == "audit check: 1 unit(s) checked, ok"
    assert report.to_dict()["violations"] == []


def test_unknown_state() -> None:
    snapshot, cloud = _clean()
    assert _rules(replace(snapshot, units=(replace(ASSIGNED, state="limbo"),)), cloud) == ["state"]


def test_db_state_disagrees_with_the_audit_trail() -> None:
    snapshot, cloud = _clean()
    trail = {RID: _trail(*FULL[:-1])}  # the row says assigned, nothing audited it
    assert "state" in _rules(replace(snapshot, transitions=trail), cloud)


def test_the_same_transition_twice_is_a_duplicate() -> None:
    snapshot, cloud = _clean()
    trail = {RID: _trail(*FULL[:3], "unit.enrolled", *FULL[3:])}
    assert _rules(replace(snapshot, transitions=trail), cloud) == ["duplicate-transition"]


def test_an_illegal_transition_in_the_trail() -> None:
    snapshot, cloud = _clean()
    trail = {RID: _trail("unit.scanned", "unit.enrolled", *FULL[3:])}
    assert _rules(replace(snapshot, transitions=trail), cloud) == ["illegal-transition"]


def test_rework_and_retries_are_legal() -> None:
    snapshot, cloud = _clean()
    trail = {RID: _trail(*FULL, "unit.scanned", "unit.failed", "unit.scanned", *FULL[1:])}
    assert _rules(replace(snapshot, transitions=trail), cloud) == []


@pytest.mark.parametrize(
    ("trail", "sha"),
    [
        (_trail(*FULL[:4], "unit.assigned"), SHA),  # never flashed
        (_trail(*FULL, read_back="cd" * 32), SHA),  # read back another config
        (_trail(*FULL), "ef" * 32),  # the unit row's hash is not the issued one
    ],
    ids=["never-flashed", "wrong-read-back", "row-hash"],
)
def test_flashed_or_assigned_needs_a_verified_read_back(trail: tuple[Transition, ...], sha: str) -> None:
    _, cloud = _clean()
    unit = replace(ASSIGNED, config_sha256=sha)
    assert "read-back" in _rules(DbSnapshot((unit,), {RID: trail}, 0, True), cloud)


def test_individual_unit_without_enrollment() -> None:
    snapshot, cloud = _clean()
    del cloud.enrollments[RID]
    assert _rules(snapshot, cloud) == ["enrollment"]


def test_group_unit_with_a_second_individual_enrollment() -> None:
    snapshot, cloud = _clean()
    snapshot = replace(snapshot, units=(replace(ASSIGNED, mode="group", group_id="line-1"),))
    assert _rules(snapshot, cloud) == ["enrollment"]
    del cloud.enrollments[RID]
    assert _rules(snapshot, cloud) == []
    cloud.groups.clear()
    assert _rules(snapshot, cloud) == ["enrollment"]


def test_revoked_unit_with_an_enabled_enrollment() -> None:
    snapshot, cloud = _clean()
    unit = replace(ASSIGNED, state="revoked")
    snapshot = DbSnapshot((unit,), {RID: _trail(*FULL, "unit.revoked")}, 0, True)
    assert _rules(snapshot, cloud) == ["enrollment"]
    cloud.enrollments[RID] = replace(cloud.enrollments[RID], provisioning_status="disabled")
    assert _rules(snapshot, cloud) == []


def test_assigned_that_dps_does_not_report_assigned() -> None:
    snapshot, cloud = _clean()
    cloud.registrations[RID] = RegistrationState(RID, "assigning")
    assert _rules(snapshot, cloud) == ["dps-state"]
    del cloud.registrations[RID]
    assert _rules(snapshot, cloud) == ["dps-state"]


def test_assigned_to_another_hub_than_dps_says() -> None:
    snapshot, cloud = _clean()
    cloud.registrations[RID] = RegistrationState(RID, "assigned", "hub-b.azure-devices.net", RID)
    assert _rules(snapshot, cloud) == ["dps-state"]


def test_left_behind_dps_assigned_but_unit_flashed() -> None:
    snapshot, cloud = _clean()
    unit = replace(ASSIGNED, state="flashed", assigned_hub=None, device_id=None)
    snapshot = DbSnapshot((unit,), {RID: _trail(*FULL[:-1])}, 0, True)
    assert _rules(snapshot, cloud) == ["dps-state"]


def test_assigned_without_hub_identity() -> None:
    snapshot, cloud = _clean()
    cloud.devices.clear()
    assert _rules(snapshot, cloud) == ["hub-identity"]
    unchecked = FakeCloud(hub_checked=False)
    unchecked.registrations, unchecked.enrollments = cloud.registrations, cloud.enrollments
    report = check(snapshot, unchecked)
    assert report.ok and report.notes


def test_broken_chain_and_undrained_outbox_are_line_violations() -> None:
    snapshot, cloud = _clean()
    broken = replace(snapshot, chain_ok=False, chain_problem="record 7: altered", unpublished_outbox=3)
    report = check(broken, cloud)
    assert [(v.unit, v.rule) for v in report.violations] == [(None, "audit-chain"), (None, "outbox")]
    assert "record 7" in report.violations[0].line() and "3 event(s)" in report.violations[1].line()
    assert "2 violation(s) (audit-chain, outbox)" in report.summary()


def test_two_live_units_with_one_mac_are_an_identity_violation() -> None:
    snapshot, cloud = _clean()
    other_rid = "sn-2-mac-02-00-00-00-00-01"
    other = replace(ASSIGNED, registration_id=other_rid, serial="SN2")
    cloud.registrations[other_rid] = RegistrationState(other_rid, "assigned", HUB, other_rid)
    cloud.enrollments[other_rid] = cloud.enrollments[RID]
    cloud.devices.add((HUB, other_rid))
    other = replace(other, device_id=other_rid)
    snapshot = DbSnapshot((ASSIGNED, other), {RID: _trail(*FULL), other_rid: _trail(*FULL)}, 0, True)
    report = check(snapshot, cloud)
    assert [(v.unit, v.rule) for v in report.violations] == [(other_rid, "identity")]
    quarantined = replace(other, state="quarantined")
    trail = {RID: _trail(*FULL), other_rid: _trail("unit.scanned", "unit.quarantined")}
    del cloud.registrations[other_rid]  # a quarantined unit never got a key, so never registered
    assert check(DbSnapshot((ASSIGNED, quarantined), trail, 0, True), cloud).ok


def test_assigned_by_convergence_from_dps_is_legal_without_a_read_back() -> None:
    """The confirmer takes `assigned` from DPS when the station's flash result was lost (issue #11, #4)."""
    snapshot, cloud = _clean()
    converged = Transition(5, "unit.assigned", {"converged": "converged from config_issued"})
    trail = (*_trail(*FULL[:4]), converged)
    assert _rules(replace(snapshot, transitions={RID: trail}), cloud) == []
    late = Transition(6, "flash.verified", {"config_sha256": SHA})  # the station's result, held up
    assert _rules(replace(snapshot, transitions={RID: (*trail, late)}), cloud) == []
    other = Transition(6, "flash.verified", {"config_sha256": "cd" * 32})
    assert _rules(replace(snapshot, transitions={RID: (*trail, other)}), cloud) == ["read-back"]
    plain = (*_trail(*FULL[:4]), Transition(5, "unit.assigned", {}))  # no DPS word: still a violation
    found = set(_rules(replace(snapshot, transitions={RID: plain}), cloud))
    assert found == {"illegal-transition", "read-back"}
