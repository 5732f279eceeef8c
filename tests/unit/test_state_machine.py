"""The unit state machine (architecture §2): every transition goes through TRANSITIONS."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.model import (
    HAPPY_PATH,
    TRANSITIONS,
    EnrollmentMode,
    Failure,
    TransitionError,
    Unit,
    UnitState,
)

S = UnitState
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
RESCANNABLE = [S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.ASSIGNED, S.FAILED]
HELD = [S.QUARANTINED, S.REVOKED]
FAILURE = Failure(stage="enroll", reason="DPS answered 403: check the connection string", retryable=False)


def make_unit(state: UnitState = S.SCANNED) -> Unit:
    unit = Unit(
        registration_id="sn-1-mac-02-00-00-00-00-01",
        serial="1",
        mac="02:00:00:00:00:01",
        line="line1",
        station="S1",
        mode=EnrollmentMode.GROUP,
    )
    unit.state = state  # a unit as loaded from the database
    return unit


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ---------------------------------------------------------------------------------------------------------
# The happy path
# ---------------------------------------------------------------------------------------------------------


def test_happy_path_walks_every_state_and_stamps_times() -> None:
    unit = make_unit()
    unit.transition(S.SCANNED, at(0))

    for minute, state in enumerate(HAPPY_PATH[1:], start=1):
        unit.transition(state, at(minute))
        assert unit.state is state

    assert list(unit.stage_times) == [s.value for s in HAPPY_PATH]
    assert unit.stage_times["assigned"] == at(5)
    assert unit.updated_at == at(5)
    assert unit.failure is None and unit.attempts == 0


def test_happy_path_order_is_the_design_one() -> None:
    assert [s.value for s in HAPPY_PATH] == [
        "scanned",
        "keyed",
        "enrolled",
        "config_issued",
        "flashed",
        "assigned",
    ]


@pytest.mark.parametrize(("source", "target"), list(itertools.pairwise(HAPPY_PATH)))
def test_each_happy_step_is_legal(source: UnitState, target: UnitState) -> None:
    unit = make_unit(source)

    unit.transition(target, at(1))

    assert unit.state is target


def test_config_can_be_reissued_without_leaving_config_issued() -> None:
    unit = make_unit(S.CONFIG_ISSUED)

    unit.transition(S.CONFIG_ISSUED, at(1))

    assert unit.state is S.CONFIG_ISSUED
    assert unit.stage_times["config_issued"] == at(1)


# Targets in declaration order, not set order: every xdist worker must collect the same list (a
# frozenset iterates in a per-process hash order).
@pytest.mark.parametrize(("source", "target"), [(s, t) for s in S for t in S if t in TRANSITIONS[s]])
def test_every_listed_transition_is_allowed(source: UnitState, target: UnitState) -> None:
    unit = make_unit(source)

    unit.transition(target, at(1))

    assert unit.state is target


# ---------------------------------------------------------------------------------------------------------
# Illegal transitions
# ---------------------------------------------------------------------------------------------------------

ILLEGAL = [(s, t) for s in S for t in S if t not in TRANSITIONS[s]]


def test_there_are_illegal_transitions_and_the_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)
    assert len(ILLEGAL) > 30


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_illegal_transition_names_unit_and_both_states_and_changes_nothing(
    source: UnitState, target: UnitState
) -> None:
    unit = make_unit(source)

    with pytest.raises(TransitionError) as excinfo:
        unit.transition(target, at(1))

    message = str(excinfo.value)
    assert unit.registration_id in message
    assert f"{source.value} -> {target.value}" in message
    assert unit.state is source
    assert unit.stage_times == {} and unit.updated_at is None


@pytest.mark.parametrize("held", HELD)
def test_quarantined_and_revoked_units_cannot_be_keyed(held: UnitState) -> None:
    with pytest.raises(TransitionError, match=f"{held.value} -> keyed"):
        make_unit(held).transition(S.KEYED, at(1))


@pytest.mark.parametrize(
    ("source", "target"),
    [(S.SCANNED, S.ENROLLED), (S.KEYED, S.FLASHED), (S.ENROLLED, S.ASSIGNED), (S.ASSIGNED, S.FAILED)],
)
def test_stages_cannot_be_skipped(source: UnitState, target: UnitState) -> None:
    with pytest.raises(TransitionError):
        make_unit(source).transition(target, at(1))


def test_assigned_unit_can_only_be_revoked_rescanned_or_judged_by_liveness() -> None:
    assert TRANSITIONS[S.ASSIGNED] == {S.REVOKED, S.SCANNED, S.ONLINE, S.NOT_ONLINE}


# ---------------------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------------------


def test_fail_counts_attempts_and_keeps_the_failure() -> None:
    unit = make_unit(S.KEYED)

    unit.fail(FAILURE, at(1))

    assert unit.state is S.FAILED
    assert unit.failure == FAILURE
    assert unit.attempts == 1
    assert unit.stage_times["failed"] == at(1)


def test_retry_after_failure_clears_failure_and_counts_each_attempt() -> None:
    unit = make_unit(S.KEYED)
    unit.fail(FAILURE, at(1))
    unit.transition(S.KEYED, at(2))  # retry the stage that failed

    assert unit.failure is None
    unit.fail(FAILURE, at(3))
    assert unit.attempts == 2


def test_failed_unit_cannot_fail_again_without_a_retry() -> None:
    unit = make_unit(S.ENROLLED)
    unit.fail(FAILURE, at(1))

    with pytest.raises(TransitionError, match="failed -> failed"):
        unit.fail(FAILURE, at(2))


@pytest.mark.parametrize("source", [S.ASSIGNED, S.QUARANTINED, S.REVOKED, S.FAILED])
def test_refused_fail_leaves_attempts_and_failure_untouched(source: UnitState) -> None:
    # Regression: the attempt used to be counted before the transition was checked.
    unit = make_unit(source)

    with pytest.raises(TransitionError):
        unit.fail(FAILURE, at(1))

    assert unit.attempts == 0
    assert unit.failure is None
    assert unit.state is source


# ---------------------------------------------------------------------------------------------------------
# Rescan (rework)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", RESCANNABLE)
def test_rescan_from_each_rescannable_state_counts_rework_and_restarts(source: UnitState) -> None:
    unit = make_unit(S.SCANNED)
    unit.transition(S.SCANNED, at(0))
    unit.state = source
    unit.attempts = 3

    unit.rescan(at(1))

    assert unit.state is S.SCANNED
    assert unit.rework_count == 1
    assert unit.attempts == 0
    assert unit.failure is None
    assert unit.stage_times["scanned"] == at(1)


def test_rescan_of_a_failed_unit_clears_its_failure() -> None:
    unit = make_unit(S.FLASHED)
    unit.fail(FAILURE, at(1))

    unit.rescan(at(2))

    assert unit.failure is None and unit.rework_count == 1


def test_rescan_counts_each_rework() -> None:
    unit = make_unit(S.ASSIGNED)

    for minute in range(3):
        unit.rescan(at(minute))

    assert unit.rework_count == 3


def test_first_scan_of_a_new_unit_is_not_rework() -> None:
    unit = make_unit()

    unit.rescan(at(0))

    assert unit.rework_count == 0
    assert unit.state is S.SCANNED


@pytest.mark.parametrize("held", HELD)
def test_rescan_refuses_quarantined_and_revoked_units(held: UnitState) -> None:
    # Regression: rescan() used to release a quarantined unit; only a human may (transition()).
    unit = make_unit(held)

    with pytest.raises(TransitionError, match=f"{held.value} -> scanned.*human"):
        unit.rescan(at(1))

    assert unit.state is held
    assert unit.rework_count == 0


@pytest.mark.parametrize("held", HELD)
def test_a_human_may_release_a_held_unit_by_an_explicit_transition(held: UnitState) -> None:
    unit = make_unit(held)

    unit.transition(S.SCANNED, at(1))

    assert unit.state is S.SCANNED


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------

actions = st.one_of(
    st.tuples(st.just("transition"), st.sampled_from(list(S))),
    st.tuples(st.just("fail"), st.just(S.FAILED)),
    st.tuples(st.just("rescan"), st.just(S.SCANNED)),
)


@given(st.lists(actions, max_size=40))
def test_random_actions_only_follow_transitions(steps: list[tuple[str, UnitState]]) -> None:
    unit = make_unit()
    for minute, (action, target) in enumerate(steps):
        before = unit.state
        attempts, rework = unit.attempts, unit.rework_count
        try:
            if action == "transition":
                unit.transition(target, at(minute))
            elif action == "fail":
                unit.fail(FAILURE, at(minute))
            else:
                unit.rescan(at(minute))
        except TransitionError:
            assert unit.state is before
            assert (unit.attempts, unit.rework_count) == (attempts, rework)
            continue
        assert unit.state in TRANSITIONS[before]
        assert unit.state is target
        assert (unit.failure is not None) == (action == "fail")
        assert unit.stage_times[target.value] == at(minute)
    assert unit.state in set(S)


# -- convergence to what DPS says (issue #8 §3) ------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.FAILED])
def test_a_unit_dps_reports_assigned_converges_with_a_reason(state: UnitState) -> None:
    unit = make_unit(state)
    if state is S.FAILED:
        unit.failure = FAILURE
    unit.assignment_overdue_at, unit.assignment_overdue_reason = T0, "flashed 20 min ago"

    what = unit.converge_assigned(T0, "DPS reports (hub h1)")

    assert (unit.state, unit.failure, unit.stage_times[S.ASSIGNED.value]) == (S.ASSIGNED, None, T0)
    assert unit.assignment_overdue_at is None and unit.assignment_overdue_reason is None
    before = (
        "failed(enroll, DPS answered 403: check the connection string)" if state is S.FAILED else state.value
    )
    assert what == f"converged from {before} to assigned as DPS reports (hub h1)"


@pytest.mark.parametrize("state", [S.QUARANTINED, S.REVOKED, S.ASSIGNED])
def test_convergence_is_refused_where_a_human_decides(state: UnitState) -> None:
    unit = make_unit(state)
    with pytest.raises(TransitionError, match="not allowed by convergence"):
        unit.converge_assigned(T0, "DPS reports")
    assert unit.state is state


def test_convergence_needs_a_reason_and_the_plain_transition_stays_strict() -> None:
    with pytest.raises(TransitionError):
        make_unit(S.FAILED).converge_assigned(T0, "")
    with pytest.raises(TransitionError):
        make_unit(S.CONFIG_ISSUED).transition(S.ASSIGNED, T0)


@pytest.mark.parametrize(
    "station_minute, expected_minute",
    [(3, 3), (-60, 1), (90, 5)],  # in order; a station clock behind the issue; one ahead of the assignment
)
def test_a_late_verified_flash_gets_a_time_between_issue_and_assignment(
    station_minute: int, expected_minute: int
) -> None:
    unit = make_unit(S.CONFIG_ISSUED)
    unit.stage_times[S.CONFIG_ISSUED.value] = at(1)
    unit.converge_assigned(at(5), "DPS reports (hub h1)")

    unit.note_late_flash(at(station_minute))

    assert (unit.state, unit.stage_times[S.FLASHED.value]) == (S.ASSIGNED, at(expected_minute))
