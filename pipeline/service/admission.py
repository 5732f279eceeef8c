"""Admission of a scan by the keyer: may this station (re)start this unit? If not, tell the station why.

Responsible for: the rework rules of issue #11 (an assigned unit is reworked only after a release or
with `rework_assigned = "allow"` at its own station; a unit in flight belongs to the station and line
that scanned it), and the refusal path: an audit record with the station as actor plus a `unit.refused`
command to that station, both in the caller's unit of work (the outbox publishes the command after
commit, so the refusal and the notice are one transaction).
Not responsible for: identity parsing (pipeline.domain.identity) or creating units (the keyer).

Why: a scan carries no proof that the device is at the station, so without these rules any station
(or a replay of a captured scan) could restart another station's or an assigned unit and receive a
fresh config with its device key encrypted to itself.
"""

from __future__ import annotations

from pipeline.domain.events import UnitRefused, UnitScanned
from pipeline.domain.model import Unit, UnitState
from pipeline.service.actors import station_actor
from pipeline.service.common import MAX_REASON, audit
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

S = UnitState
# Owned by the station that scanned them until they are assigned (a failed unit is still in flight:
# the reconciler and its station may retry it).
IN_FLIGHT = frozenset({S.SCANNED, S.KEYED, S.ENROLLED, S.CONFIG_ISSUED, S.FLASHED, S.FAILED})


def release_hint(unit: Unit) -> str:
    """The command that lets another scan rework `unit`."""
    return f'`edgeline unit release {unit.registration_id} --reason "..."`'


def rescan_refusal(unit: Unit, event: UnitScanned, rework_assigned: str) -> tuple[str, str] | None:
    """Why `event` may not rework the known `unit`, as (kind, reason); None when it may."""
    rid = unit.registration_id
    if unit.state is S.QUARANTINED and not unit.rework_released:
        why = unit.failure.reason if unit.failure else "identity conflict"
        return "quarantined", f"unit {rid} is quarantined ({why}); release it with {release_hint(unit)}"
    if unit.state is S.REVOKED:
        return "refused", (
            f"unit {rid} is revoked (enrollment disabled: scrap or RMA); "
            f"`edgeline enrollment enable {rid}` restores it"
        )
    if unit.rework_released:
        return None
    same_owner = (event.line, event.station) == (unit.line, unit.station)
    if unit.state is S.ASSIGNED:
        if rework_assigned == "allow" and same_owner:
            return None
        return "refused", (
            f"unit {rid} is already assigned (provisioned at station {unit.station} of line {unit.line}); "
            f"rework needs {release_hint(unit)}"
        )
    if unit.state in IN_FLIGHT and not same_owner:
        return "refused", (
            f"unit {rid} is in flight ({unit.state.value}) at station {unit.station} of line {unit.line}; "
            f"finish it there, or move it with {release_hint(unit)}"
        )
    return None


def refuse_scan(
    uow: UnitOfWork,
    ctx: Context,
    event: UnitScanned,
    *,
    kind: str,
    reason: str,
    unit: Unit | None = None,
    audited: bool = False,
) -> None:
    """Audit the refusal (actor: the station that scanned) and queue `unit.refused` to that station.

    With no `unit` (the identity itself is invalid) the station's own registration ID, serial and MAC
    are kept in the audit record. `audited`: the caller already recorded why (e.g. the quarantine).
    """
    reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
    if not audited:
        detail = {"refusal": kind, "reason": reason, "line": event.line, "port": event.port}
        if unit is None:
            claimed = {"registration_id": event.registration_id, "serial": event.serial, "mac": event.mac}
            detail.update({name: value[:128] for name, value in claimed.items()})
        else:
            detail.update(state=unit.state.value, owner=f"{unit.line}/{unit.station}")
        record = "unit.rescan_refused" if unit is not None else "scan.refused"
        audit(uow, ctx, unit, record, station_actor(event.station, event.port), **detail)
    notice = UnitRefused(
        station=event.station,
        port=event.port,
        kind=kind,
        reason=reason,
        registration_id=event.registration_id,
        serial=event.serial,
        mac=event.mac,
    )
    ctx.emit(uow, notice, ctx.topics.station_command(event.line, event.station, UnitRefused.NAME))
