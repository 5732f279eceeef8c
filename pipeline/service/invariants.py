"""The line's invariants, checked after the fact (`edgeline audit check`): is every unit where it should be?

Responsible for: judging a database snapshot against DPS and the IoT hub — each unit in exactly one
known state that its audit trail and DPS agree with, one enrollment per registration ID, no unit
flashed or assigned without a verified read-back, no illegal or repeated transition in a unit's trail,
an intact hash chain and a drained outbox — and saying per violation what to do.
Not responsible for: reading the database (pipeline.db.invariants), talking HTTP (pipeline.azure) or
presentation (pipeline.cli.audit_cmd). Run it on a line at rest: units still moving are "behind".
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.azure.ports import EnrollmentInfo, HubDevice, RegistrationState
from pipeline.domain.model import CONVERGIBLE_TO_ASSIGNED, TRANSITIONS, UnitState

STATES = {state.value for state in UnitState}
ENROLLED_OR_LATER = {"enrolled", "config_issued", "flashed", "assigned"}
READ_BACK_STATES = {"flashed", "assigned"}


@dataclass(frozen=True, slots=True)
class UnitFacts:
    """A unit row, the columns the invariants look at."""

    registration_id: str
    state: str
    mode: str
    group_id: str | None = None
    device_id: str | None = None
    assigned_hub: str | None = None
    config_sha256: str | None = None
    serial: str = ""
    mac: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """One audit record about a unit (kind `unit.<state>` for state changes)."""

    record_id: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DbSnapshot:
    """What the database says, read once."""

    units: tuple[UnitFacts, ...]
    transitions: dict[str, tuple[Transition, ...]]
    unpublished_outbox: int
    chain_ok: bool
    chain_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: which unit (None: the whole line), which rule, what is wrong, what to do."""

    unit: str | None
    rule: str
    problem: str
    action: str

    def line(self) -> str:
        return f"{self.unit or '(line)'}: {self.rule}: {self.problem}; {self.action}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """All violations found, and what could not be checked."""

    units: int
    violations: tuple[Violation, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        rules = sorted({v.rule for v in self.violations})
        verdict = "ok" if self.ok else f"{len(self.violations)} violation(s) ({', '.join(rules)})"
        return f"audit check: {self.units} unit(s) checked, {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "units": self.units,
            "violations": [asdict(v) for v in self.violations],
            "notes": list(self.notes),
        }


class CloudState(abc.ABC):
    """What DPS and the IoT hub say about a unit (read-only)."""

    hub_checked: bool = True

    @abc.abstractmethod
    def registration(self, unit: UnitFacts) -> RegistrationState | None: ...

    @abc.abstractmethod
    def individual_enrollment(self, registration_id: str) -> EnrollmentInfo | None: ...

    @abc.abstractmethod
    def hub_device(self, hub: str, device_id: str) -> HubDevice | None: ...

    @abc.abstractmethod
    def group_exists(self, group_id: str) -> bool: ...


def check(snapshot: DbSnapshot, cloud: CloudState) -> CheckReport:
    """Every invariant over every unit, then the line-wide ones."""
    violations: list[Violation] = []
    for unit in snapshot.units:
        trail = snapshot.transitions.get(unit.registration_id, ())
        violations.extend(_unit_violations(unit, trail, cloud))
    violations.extend(_identity_violations(snapshot.units))
    violations.extend(_line_violations(snapshot))
    notes = (
        () if cloud.hub_checked else ("hub identities not checked: iot_hub_connection_strings is not set",)
    )
    return CheckReport(len(snapshot.units), tuple(violations), notes)


def _unit_violations(
    unit: UnitFacts, trail: tuple[Transition, ...], cloud: CloudState
) -> Iterator[Violation]:
    if unit.state not in STATES:
        yield Violation(
            unit.registration_id,
            "state",
            f"unknown state {unit.state!r}",
            "restore the row from the audit trail",
        )
        return
    yield from _trail_violations(unit, trail)
    yield from _read_back_violations(unit, trail)
    yield from _enrollment_violations(unit, cloud)
    yield from _dps_violations(unit, cloud)


def _state_changes(trail: tuple[Transition, ...]) -> list[Transition]:
    return [t for t in trail if t.kind.startswith("unit.") and t.kind[5:] in STATES]


def _trail_violations(unit: UnitFacts, trail: tuple[Transition, ...]) -> Iterator[Violation]:
    changes = _state_changes(trail)
    rid = unit.registration_id
    if not changes or changes[-1].kind != f"unit.{unit.state}":
        last = changes[-1].kind if changes else "none"
        yield Violation(
            rid,
            "state",
            f"the unit is {unit.state} but its last audited transition is {last}",
            "find who changed the row (audit unit) and correct it",
        )
    for before, after in itertools.pairwise(changes):
        source, target = UnitState(before.kind[5:]), UnitState(after.kind[5:])
        if target in TRANSITIONS[source] or _converged(after, source):
            continue
        rule = "duplicate-transition" if source is target else "illegal-transition"
        yield Violation(
            rid,
            rule,
            f"audit records {before.record_id} and {after.record_id}: {source} -> {target}",
            "a message was applied twice or out of order: report it with `edgeline audit unit`",
        )


def _converged(change: Transition, source: UnitState | None) -> bool:
    """An `assigned` the confirmer took from DPS's word (`Unit.converge_assigned`), from a state it may."""
    return (
        change.kind == "unit.assigned"
        and bool(change.detail.get("converged"))
        and (source is None or source in CONVERGIBLE_TO_ASSIGNED)
    )


def _read_back_violations(unit: UnitFacts, trail: tuple[Transition, ...]) -> Iterator[Violation]:
    if unit.state not in READ_BACK_STATES:
        return
    changes = _state_changes(trail)
    issued = [i for i, t in enumerate(changes) if t.kind == "unit.config_issued"]
    flashed = [t for t in changes[issued[-1] + 1 :] if t.kind == "unit.flashed"] if issued else []
    rid, rescan = unit.registration_id, "rescan the unit at a station to flash and verify it again"
    if not flashed and any(_converged(t, None) for t in changes[issued[-1] + 1 if issued else 0 :]):
        # The device registered with the issued key (DPS says so): its read-back was lost or came late
        # (`flash.verified`); a late one must still be of the issued config.
        since = changes[issued[-1]].record_id if issued else 0
        late = [t for t in trail if t.kind == "flash.verified" and t.record_id > since]
        if any(t.detail.get("config_sha256") != unit.config_sha256 for t in late):
            yield Violation(
                rid, "read-back", "a late read-back's SHA-256 does not match the issued config", rescan
            )
        return
    if not flashed:
        yield Violation(
            rid, "read-back", f"{unit.state} without a verified read-back of the issued config", rescan
        )
        return
    issued_hash = changes[issued[-1]].detail.get("config_sha256")
    read_back = flashed[0].detail.get("config_sha256")
    if not (issued_hash and read_back == issued_hash == unit.config_sha256):
        yield Violation(rid, "read-back", "the read-back SHA-256 does not match the issued config", rescan)


def _enrollment_violations(unit: UnitFacts, cloud: CloudState) -> Iterator[Violation]:
    rid = unit.registration_id
    enrollment = cloud.individual_enrollment(rid)
    status = enrollment.provisioning_status if enrollment else None
    if unit.mode == "group" and enrollment is not None and unit.state != "revoked":
        yield Violation(
            rid,
            "enrollment",
            "a group unit also has an individual enrollment (two enrollments; it shadows the group)",
            "delete the individual enrollment in DPS unless the unit is meant to be revoked",
        )
    elif unit.mode == "group" and unit.state in ENROLLED_OR_LATER and not _group_ok(unit, cloud):
        yield Violation(
            rid,
            "enrollment",
            f"{unit.state} but DPS has no enrollment group {unit.group_id!r}",
            "recreate it with `edgeline group create` (its devices cannot provision)",
        )
    elif unit.mode == "individual" and unit.state in ENROLLED_OR_LATER and enrollment is None:
        yield Violation(
            rid, "enrollment", f"{unit.state} but DPS has no enrollment", "rescan the unit to enroll it again"
        )
    elif unit.state == "revoked" and enrollment is not None and status not in ("disabled", None):
        yield Violation(
            rid,
            "enrollment",
            f"revoked but its DPS enrollment is {status}",
            "run `edgeline enrollment disable` again",
        )


def _group_ok(unit: UnitFacts, cloud: CloudState) -> bool:
    return unit.group_id is None or cloud.group_exists(unit.group_id)


def _dps_violations(unit: UnitFacts, cloud: CloudState) -> Iterator[Violation]:
    rid = unit.registration_id
    if unit.state == "revoked":  # may have been assigned before it was revoked
        return
    registration = cloud.registration(unit)
    dps_assigned = registration is not None and registration.status == "assigned"
    if unit.state == "assigned":
        yield from _assigned_violations(unit, registration, cloud)
    elif dps_assigned:
        yield Violation(
            rid,
            "dps-state",
            f"DPS reports it assigned but the unit is {unit.state}",
            "let the confirmer catch up (is `edgeline up` running?) or rescan the unit",
        )


def _assigned_violations(
    unit: UnitFacts, registration: RegistrationState | None, cloud: CloudState
) -> Iterator[Violation]:
    rid = unit.registration_id
    if registration is None or registration.status != "assigned":
        status = registration.status if registration else "no registration"
        yield Violation(
            rid, "dps-state", f"assigned but DPS reports {status}", "check the device and rescan the unit"
        )
        return
    if (registration.assigned_hub, registration.device_id or rid) != (
        unit.assigned_hub,
        unit.device_id or rid,
    ):
        yield Violation(
            rid,
            "dps-state",
            f"assigned to {unit.assigned_hub}/{unit.device_id} but DPS says "
            f"{registration.assigned_hub}/{registration.device_id}",
            "the device re-provisioned: rescan the unit or correct the record",
        )
    elif (
        cloud.hub_checked
        and unit.assigned_hub
        and cloud.hub_device(unit.assigned_hub, unit.device_id or rid) is None
    ):
        yield Violation(
            rid,
            "hub-identity",
            f"assigned but {unit.assigned_hub} has no device {unit.device_id or rid}",
            "have the device register with DPS again (reboot it) or rescan it",
        )


def _identity_violations(units: tuple[UnitFacts, ...]) -> Iterator[Violation]:
    """Two live units sharing a serial or a MAC: the keyer should have quarantined the later one."""
    seen: dict[tuple[str, str], str] = {}
    for unit in units:  # in creation order: the first holder of a serial or MAC keeps it
        if unit.state in ("quarantined", "revoked"):
            continue
        for what, value in (("serial", unit.serial), ("MAC", unit.mac)):
            if not value:
                continue
            first = seen.setdefault((what, value), unit.registration_id)
            if first != unit.registration_id:
                yield Violation(
                    unit.registration_id,
                    "identity",
                    f"shares {what} {value} with unit {first} and was not quarantined",
                    "revoke the wrong one with `edgeline enrollment disable` after checking the devices",
                )


def _line_violations(snapshot: DbSnapshot) -> Iterator[Violation]:
    if not snapshot.chain_ok:
        yield Violation(
            None,
            "audit-chain",
            f"the hash chain is broken ({snapshot.chain_problem})",
            "history was altered: restore the audit log from a backup and investigate",
        )
    if snapshot.unpublished_outbox:
        yield Violation(
            None,
            "outbox",
            f"{snapshot.unpublished_outbox} event(s) committed but never published",
            "start `edgeline up` (its relay publishes them) and check the broker",
        )
