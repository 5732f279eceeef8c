"""The keyer's rework rules as a table (pipeline.service.admission.rescan_refusal). Pure."""

from __future__ import annotations

import pytest

from pipeline.domain.events import UnitScanned
from pipeline.domain.model import EnrollmentMode, Failure, Unit, UnitState
from pipeline.service.admission import rescan_refusal

S = UnitState
OWNER = ("L1", "S1")


def unit(state: UnitState, released: bool = False) -> Unit:
    failure = Failure("keying", "identity conflict: same MAC", False) if state is S.QUARANTINED else None
    return Unit(
        registration_id="sn-1-mac-00-1b-44-00-00-01",
        serial="1",
        mac="00:1b:44:00:00:01",
        line="L1",
        station="S1",
        mode=EnrollmentMode.GROUP,
        state=state,
        failure=failure,
        rework_released=released,
    )


def scan_from(line: str, station: str) -> UnitScanned:
    return UnitScanned("sn-1-mac-00-1b-44-00-00-01", "1", "00:1b:44:00:00:01", line, station, "p0")


IN_FLIGHT = [S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.FAILED]


@pytest.mark.parametrize(
    "state, released, policy, where, expected",
    [
        *[(s, False, "refuse", OWNER, None) for s in IN_FLIGHT],
        *[(s, False, "refuse", ("L1", "S2"), "in flight") for s in IN_FLIGHT],
        *[(s, False, "refuse", ("L2", "S1"), "in flight") for s in IN_FLIGHT],
        *[(s, True, "refuse", ("L2", "S9"), None) for s in IN_FLIGHT],
        (S.ASSIGNED, False, "refuse", OWNER, "already assigned"),
        (S.ASSIGNED, False, "allow", OWNER, None),
        (S.ASSIGNED, False, "allow", ("L1", "S2"), "already assigned"),
        (S.ASSIGNED, True, "refuse", ("L1", "S2"), None),
        (S.QUARANTINED, False, "allow", OWNER, "is quarantined (identity conflict: same MAC)"),
        (S.QUARANTINED, True, "refuse", ("L1", "S2"), None),
        (S.REVOKED, True, "allow", OWNER, "edgeline enrollment enable"),
    ],
)
def test_rescan_refusal_table(
    state: UnitState, released: bool, policy: str, where: tuple[str, str], expected: str | None
) -> None:
    refusal = rescan_refusal(unit(state, released), scan_from(*where), policy)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None and expected in refusal[1]
        assert refusal[0] == ("quarantined" if state is S.QUARANTINED else "refused")
        if state is not S.REVOKED:
            assert "edgeline unit release sn-1-mac-00-1b-44-00-00-01" in refusal[1]
