"""The unit and its state machine (architecture §2), enforced on every transition.

Responsible for: which states exist, which transitions are legal, and recording failures with stage,
reason, retryability and attempt count.
Not responsible for: persistence (pipeline.db) or side effects (pipeline.service handlers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class UnitState(enum.StrEnum):
    """Where a unit is on its way to `assigned`."""

    SCANNED = "scanned"
    KEYED = "keyed"
    ENROLLED = "enrolled"
    CONFIG_ISSUED = "config_issued"
    FLASHED = "flashed"
    ASSIGNED = "assigned"
    ONLINE = "online"  # the hub shows the IoT Edge runtime running (optional liveness check)
    NOT_ONLINE = "not_online"  # the runtime was not seen running within the timeout; reason in failure
    FAILED = "failed"
    QUARANTINED = "quarantined"
    REVOKED = "revoked"


class EnrollmentMode(enum.StrEnum):
    """Group: one enrollment group per product, derived keys. Individual: one enrollment per unit."""

    GROUP = "group"
    INDIVIDUAL = "individual"


S = UnitState
# A rescan (rework) may restart any unit that is not held for a human (quarantined) or scrapped (revoked).
_RESCANNABLE = {
    S.SCANNED,
    S.KEYED,
    S.ENROLLED,
    S.CONFIG_ISSUED,
    S.FLASHED,
    S.ASSIGNED,
    S.ONLINE,
    S.NOT_ONLINE,
    S.FAILED,
}
TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    S.SCANNED: frozenset({S.KEYED, S.FAILED, S.QUARANTINED, S.REVOKED}),
    S.KEYED: frozenset({S.ENROLLED, S.FAILED, S.REVOKED}),
    S.ENROLLED: frozenset({S.CONFIG_ISSUED, S.FAILED, S.REVOKED}),
    # config_issued -> config_issued: the flash command is re-sent (reconciler, station came back).
    S.CONFIG_ISSUED: frozenset({S.CONFIG_ISSUED, S.FLASHED, S.FAILED, S.REVOKED}),
    S.FLASHED: frozenset({S.ASSIGNED, S.FAILED, S.REVOKED}),
    # Liveness (optional): assigned -> online | not_online; not_online -> online is left open for a re-check.
    S.ASSIGNED: frozenset({S.ONLINE, S.NOT_ONLINE, S.REVOKED}),
    S.ONLINE: frozenset({S.REVOKED}),
    S.NOT_ONLINE: frozenset({S.ONLINE, S.REVOKED}),
    # A retryable failure goes back to the stage that failed; see Unit.retry.
    S.FAILED: frozenset({S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.REVOKED}),
    S.QUARANTINED: frozenset({S.SCANNED, S.REVOKED}),
    S.REVOKED: frozenset({S.SCANNED}),
}
for _state in _RESCANNABLE:
    TRANSITIONS[_state] = TRANSITIONS[_state] | {S.SCANNED}

# DPS is the truth about assignment: a unit DPS reports assigned converges to `assigned` from any
# state a lost message or a too-early failure may have left it in (Unit.converge_assigned, with a reason).
# Not from quarantined (a human decides) nor revoked (scrapped: the enrollment must be disabled instead).
CONVERGIBLE_TO_ASSIGNED = frozenset({S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.FAILED})


class TransitionError(RuntimeError):
    """A handler tried a transition the state machine forbids: a bug or an out-of-order message."""


@dataclass(slots=True)
class Failure:
    """Why a unit failed: the stage, a reason an operator can act on, and whether a retry may help."""

    stage: str
    reason: str
    retryable: bool


@dataclass(slots=True)
class Unit:
    """One physical device on its way through the line, identified by its registration ID."""

    registration_id: str
    serial: str
    mac: str
    line: str
    station: str
    mode: EnrollmentMode
    state: UnitState = UnitState.SCANNED
    product: str = "default"
    batch: str | None = None
    port: str | None = None
    group_id: str | None = None
    device_id: str | None = None
    assigned_hub: str | None = None
    config_sha256: str | None = None
    failure: Failure | None = None
    attempts: int = 0
    rework_count: int = 0
    rework_released: bool = False  # an operator released it: the next scan, from any station, reworks it
    next_check_at: datetime | None = None  # confirmer: when to ask DPS again
    station_scanned_at: datetime | None = None  # when the station says it scanned (event time)
    assignment_overdue_at: datetime | None = None  # confirmer: flagged as waiting too long for DPS
    assignment_overdue_reason: str | None = None
    checks: int = 0  # confirmer: how many times DPS was asked since flashing
    # Key ledger: which key the flashed device key came from (set when its config is issued).
    key_store: str | None = None  # "database" | "pkcs11"
    key_source: str | None = None  # "group:<group id>" | "individual"
    key_fingerprint: str | None = None  # of that group key (its version), or of the individual key
    stage_times: dict[str, datetime] = field(default_factory=dict)
    updated_at: datetime | None = None

    def transition(self, target: UnitState, at: datetime) -> None:
        """Move to `target` if the state machine allows it, stamping the stage time."""
        if target not in TRANSITIONS[self.state]:
            raise TransitionError(
                f"unit {self.registration_id}: {self.state.value} -> {target.value} is not allowed"
            )
        if target is not UnitState.FAILED:
            self.failure = None
        if target in (UnitState.SCANNED, UnitState.ASSIGNED):  # the overdue flag is about this flash only
            self.assignment_overdue_at = self.assignment_overdue_reason = None
        self.state = target
        self.stage_times[target.value] = at
        self.updated_at = at

    def converge_assigned(self, at: datetime, reason: str) -> str:
        """Move to `assigned` because DPS reports it, whatever the recorded stage; return what happened.

        The one transition outside TRANSITIONS: it needs a reason (DPS's word) and is refused from
        quarantined and revoked, where a human decides.
        """
        if self.state not in CONVERGIBLE_TO_ASSIGNED or not reason:
            raise TransitionError(
                f"unit {self.registration_id}: {self.state.value} -> assigned is not allowed by convergence"
            )
        before = self.state.value
        if self.failure is not None:
            before = f"failed({self.failure.stage}, {self.failure.reason})"
        self.failure = None
        self.state = UnitState.ASSIGNED
        self.stage_times[UnitState.ASSIGNED.value] = at
        self.updated_at = at
        self.assignment_overdue_at = self.assignment_overdue_reason = None
        return f"converged from {before} to assigned as {reason}"

    def note_late_flash(self, station_time: datetime) -> None:
        """Record when the station verified the flash of the current config, after DPS's word already
        moved the unit past `flashed` (its report was held up). The station's clock is not trusted
        beyond order: the time is kept between the config's issue and the assignment, so the timeline
        stays in flow order."""
        issued = self.stage_times.get(UnitState.CONFIG_ISSUED.value)
        assigned = self.stage_times.get(UnitState.ASSIGNED.value)
        at = min(station_time, assigned) if assigned is not None else station_time
        self.stage_times[UnitState.FLASHED.value] = max(at, issued) if issued is not None else at

    def fail(self, failure: Failure, at: datetime) -> None:
        """Mark the unit failed at a stage; counts the attempt."""
        self.transition(UnitState.FAILED, at)  # first: a refused transition must not count an attempt
        self.attempts += 1
        self.failure = failure

    def rescan(self, at: datetime) -> None:
        """Restart the unit for rework: same identity, same enrollment, config flashed again."""
        released = self.state is UnitState.QUARANTINED and self.rework_released
        if self.state not in _RESCANNABLE and not released:  # only a human may release these units
            raise TransitionError(
                f"unit {self.registration_id}: {self.state.value} -> scanned is not allowed by a rescan; "
                "a human must release the unit"
            )
        rework = self.state is not UnitState.SCANNED or bool(self.stage_times)
        self.transition(UnitState.SCANNED, at)
        self.rework_count += rework
        self.attempts = 0
        self.rework_released = False  # a release is good for one rework


HAPPY_PATH = (S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.ASSIGNED)
