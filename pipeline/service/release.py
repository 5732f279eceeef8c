"""Releasing a unit for rework (`edgeline unit release`): the human decision the admission rules ask for.

Responsible for: finding the unit by registration ID, serial or MAC, marking it released (the next
scan, from any station or line, reworks it and becomes its owner), and the audit record naming the
operator (OS user@host) and the reason.
Not responsible for: the rework itself (the keyer consumes the release) or argument parsing (the CLI).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.identity import IdentityError, parse_mac
from pipeline.domain.model import Unit, UnitState
from pipeline.service.unit_of_work import UnitOfWork, UnitRepository

MAX_RELEASE_REASON = 500


class ReleaseError(RuntimeError):
    """A release that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Released:
    """What the release did, for the operator."""

    registration_id: str
    state: str
    owner: str  # line/station that scanned it last
    already: bool  # it was released before and not reworked since


def find_unit(units: UnitRepository, key: str, *, for_update: bool = False) -> Unit | None:
    """The unit whose registration ID, serial or MAC (any separator style) is `key`."""
    key = key.strip()
    unit = units.get(key, for_update=for_update) or units.get(key.lower(), for_update=for_update)
    if unit is None:
        with contextlib.suppress(IdentityError):  # not MAC-shaped: look it up as a serial
            unit = units.find_by_mac(parse_mac(key))
    if unit is None:
        unit = units.find_by_serial(key)
    if unit is not None and for_update:
        unit = units.get(unit.registration_id, for_update=True)
    return unit


def release_for_rework(
    uow_factory: Callable[[], UnitOfWork], key: str, *, reason: str, operator: str, now: datetime
) -> Released:
    """Mark the unit released for one rework, audited with `operator` as actor; idempotent."""
    reason = " ".join(reason.split())
    if not reason:
        raise ReleaseError('give a reason: --reason "why the unit is reworked" (it goes to the audit log)')
    if len(reason) > MAX_RELEASE_REASON:
        raise ReleaseError(f"the reason is {len(reason)} characters long; at most {MAX_RELEASE_REASON}")
    with uow_factory() as uow:
        unit = find_unit(uow.units, key, for_update=True)
        if unit is None:
            raise ReleaseError(f"no unit has registration ID, serial or MAC {key.strip()[:80]!r}")
        if unit.state is UnitState.REVOKED:
            raise ReleaseError(
                f"unit {unit.registration_id} is revoked: `edgeline enrollment enable "
                f"{unit.registration_id}` restores it first"
            )
        already = unit.rework_released
        unit.rework_released = True
        uow.units.save(unit)
        uow.audit.append(
            at=now,
            kind="unit.released",
            actor=operator,
            registration_id=unit.registration_id,
            detail={"reason": reason, "state": unit.state.value, "owner": f"{unit.line}/{unit.station}"},
        )
        uow.commit()
    return Released(unit.registration_id, unit.state.value, f"{unit.line}/{unit.station}", already)
