"""Liveness (optional scheduler job): after `assigned`, proof through the hub that IoT Edge runs.

With `online_check = true`, each assigned unit's hub is asked (through the `HubRegistry` port) for the
device identity and its `$edgeAgent` module twin. The unit becomes `online` when the identity is an
enabled IoT Edge device and edgeAgent reports `systemModules.edgeAgent.runtimeStatus = running` (and,
once a deployment targets the device, i.e. `$edgeAgent`'s desired properties name an edgeHub,
`systemModules.edgeHub.runtimeStatus = running` too). Until `online_timeout_seconds` after assignment it
is looked at again every `online_check_interval_seconds`; then it becomes `not_online`, with the last
reason seen (never connected, runtime error, wrong hub) as its failure. This is the automatic version of
the article's `iotedge system status` / `iotedge list` at the end of the procedure.
Not responsible for: DPS assignment (confirming) or anything the device does (it reports to its hub).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pipeline.azure.ports import AzureError, HubDevice, HubRegistry, ModuleTwin
from pipeline.domain.events import UnitNotOnline, UnitOnline
from pipeline.domain.model import Failure, Unit, UnitState
from pipeline.service.common import MAX_REASON, record_transition
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "liveness"
BATCH = 200
EDGE_AGENT = "$edgeAgent"
NO_DEPLOYMENT = 417  # edgeAgent's lastDesiredStatus when no deployment targets the device yet
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the hub shows: online, or not (yet), why, and whether waiting longer can change it.

    `answered` is False when the hub could not be asked for a passing reason (429, 5xx, no response):
    such a look never times a unit out, so a hub outage cannot turn a line's units `not_online`.
    """

    online: bool
    reason: str
    final: bool = False
    answered: bool = True


def _section(document: dict[str, Any], *path: str) -> dict[str, Any]:
    for name in path:
        value = document.get(name)
        document = value if isinstance(value, dict) else {}
    return document


def _module_status(reported: dict[str, Any], module: str) -> tuple[str, str]:
    section = _section(reported, "systemModules", module)
    return str(section.get("runtimeStatus") or "unknown"), str(section.get("statusDescription") or "")[:200]


def judge(hub: str, device_id: str, device: HubDevice | None, agent: ModuleTwin | None) -> Verdict:
    """Decide from the hub's identity and `$edgeAgent` twin whether the IoT Edge runtime runs (pure)."""
    if device is None:
        return Verdict(False, f"wrong hub: device {device_id} is not in hub {hub}; check the DPS allocation")
    if not device.iot_edge:
        return Verdict(False, f"device {device_id} in hub {hub} is not an IoT Edge device", final=True)
    if device.status != "enabled":
        return Verdict(False, f"device {device_id} is {device.status} in hub {hub}", final=True)
    reported = agent.reported if agent is not None else {}
    if not _section(reported, "systemModules"):
        return Verdict(False, "never connected: the IoT Edge runtime has not reported to the hub")
    status, words = _module_status(reported, "edgeAgent")
    if status != "running":
        return Verdict(False, f"runtime error: edgeAgent is {status}" + (f" ({words})" if words else ""))
    code = _section(reported, "lastDesiredStatus").get("code")
    if isinstance(code, int) and code >= 400 and code != NO_DEPLOYMENT:
        text = str(_section(reported, "lastDesiredStatus").get("description") or "")[:200]
        return Verdict(
            False, f"runtime error: deployment not applied (lastDesiredStatus {code} {text})".strip()
        )
    if agent is not None and _section(agent.desired, "systemModules", "edgeHub"):
        status, words = _module_status(reported, "edgeHub")
        if status != "running":
            return Verdict(False, f"runtime error: edgeHub is {status}" + (f" ({words})" if words else ""))
    return Verdict(True, "IoT Edge runtime running")


def look(hub_registry: HubRegistry, unit: Unit) -> Verdict:
    """Ask the unit's hub; a failed call is a (non-final) reason, never an exception."""
    hub, device_id = unit.assigned_hub or "", unit.device_id or unit.registration_id
    try:
        device = hub_registry.get_device(hub, device_id)
        agent = hub_registry.get_module_twin(hub, device_id, EDGE_AGENT) if device is not None else None
    except AzureError as exc:  # e.g. no connection string for the hub DPS chose: counts, unlike a 503
        return Verdict(False, f"hub {hub} could not be asked: {exc}", answered=not exc.retryable)
    return judge(hub, device_id, device, agent)


def check_liveness(ctx: Context) -> int:
    """Look at every due assigned unit once; return how many became `online` or `not_online`."""
    if not ctx.settings.online_check or ctx.hub is None:
        return 0
    now = ctx.clock()
    with ctx.uow_factory() as uow:
        # Every assigned unit, longest-unvisited first (index on state; `stuck` compares strictly).
        candidates = uow.units.stuck((UnitState.ASSIGNED,), now + timedelta(seconds=1), BATCH)
    due = [u for u in candidates if u.next_check_at is None or u.next_check_at <= now]
    verdicts = {u.registration_id: look(ctx.hub, u) for u in due}
    decided = 0
    with ctx.uow_factory() as uow:
        for registration_id, verdict in verdicts.items():
            unit = uow.units.get(registration_id, for_update=True)
            if unit is not None and unit.state is UnitState.ASSIGNED:
                decided += _apply(uow, ctx, unit, verdict)
        uow.commit()
    return decided


def _apply(uow: UnitOfWork, ctx: Context, unit: Unit, verdict: Verdict) -> bool:
    now = ctx.clock()
    assigned_at = unit.stage_times.get(UnitState.ASSIGNED.value, now)
    timed_out = now - assigned_at >= timedelta(seconds=ctx.settings.online_timeout_seconds)
    hub, device_id = unit.assigned_hub or "", unit.device_id or unit.registration_id
    if verdict.online:
        unit.transition(UnitState.ONLINE, now)
        record_transition(uow, ctx, unit, ACTOR, hub=hub, outcome=verdict.reason)
        ctx.emit_unit_event(
            uow, UnitOnline(registration_id=unit.registration_id, assigned_hub=hub, device_id=device_id)
        )
        return True
    if verdict.final or (timed_out and verdict.answered):
        reason = verdict.reason[:MAX_REASON]
        unit.transition(UnitState.NOT_ONLINE, now)
        unit.failure = Failure(stage="online", reason=reason, retryable=not verdict.final)
        record_transition(uow, ctx, unit, ACTOR, hub=hub, reason=reason)
        ctx.emit_unit_event(
            uow, UnitNotOnline(registration_id=unit.registration_id, assigned_hub=hub, reason=reason)
        )
        return True
    unit.next_check_at = now + timedelta(seconds=ctx.settings.online_check_interval_seconds)
    unit.updated_at = now  # the batch query visits the longest-unvisited units first
    uow.units.save(unit)
    return False
