"""Pre-provisioning approval: the MES says allow or deny before a scanned unit gets its key.

With `approval_url` or `approval_command` set, the keyer leaves a new or reworked unit in `scanned` and
hands it to the `ApprovalRunner`: a small thread pool, so a slow MES delays only the units it is slow
about, never the consumer's threads or other units. Each answer is applied in its own transaction:
allow -> the decision (extra tags, hub choice) is stored and the unit is keyed; deny -> the unit is
quarantined with the MES's reason. When the MES cannot be asked (timeout, 5xx, malformed answer) after
`approval_retries`, `approval_fail_mode` decides: "closed" fails the unit at stage `approval`
(retryable: the reconciler asks again later), "open" keys it and says so in the audit.
The database stays the truth: a unit whose request was lost in a crash sits in `scanned` and the
reconciler asks again.
Not responsible for: transport (`pipeline.mes`) or the answer's format (`pipeline.domain.approval`).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.domain.approval import ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalUnavailable
from pipeline.domain.events import UnitQuarantined, UnitRefused
from pipeline.domain.model import Failure, Unit, UnitState
from pipeline.mes.ports import Approver
from pipeline.service.common import audit, fail_unit, record_transition
from pipeline.service.context import Context
from pipeline.service.keying import give_key
from pipeline.service.unit_of_work import UnitOfWork

ACTOR = "approver"
STAGE = "approval"
log = logging.getLogger(__name__)


def request_of(unit: Unit) -> ApprovalRequest:
    """What the MES is asked about `unit`."""
    return ApprovalRequest(
        registration_id=unit.registration_id,
        serial=unit.serial,
        mac=unit.mac,
        station=unit.station,
        line=unit.line,
        product=unit.product,
        batch=unit.batch,
    )


def ask(approver: Approver, request: ApprovalRequest, retries: int, backoff: float = 0.5) -> ApprovalDecision:
    """Ask with up to `retries` more attempts on ApprovalUnavailable (capped backoff); errors propagate."""
    for attempt in range(retries + 1):
        try:
            return approver.decide(request)
        except ApprovalUnavailable:
            if attempt == retries:
                raise
            time.sleep(min(backoff * 2**attempt, 10.0))
    raise AssertionError("unreachable")


class ApprovalRunner:
    """Asks the MES for units handed over by the keyer or the reconciler, a few at a time."""

    def __init__(self, approver: Approver, concurrency: int = 8) -> None:
        self.approver = approver
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="approval")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._ctx: Context | None = None

    def bind(self, ctx: Context) -> None:
        """Give the runner the context it applies decisions with (built after the runner)."""
        self._ctx = ctx

    def submit(self, registration_id: str) -> None:
        """Ask about the unit unless a request for it is already running; returns at once."""
        with self._lock:
            if registration_id in self._in_flight:
                return
            self._in_flight.add(registration_id)
        self._pool.submit(self._run, registration_id)

    def stop(self) -> None:
        """Finish running requests; queued ones are left to the reconciler of the next run."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, registration_id: str) -> None:
        try:
            assert self._ctx is not None, "ApprovalRunner.bind(ctx) was not called"
            approve_unit(self._ctx, self.approver, registration_id)
        except Exception:  # a worker thread must never die silently: the reconciler will ask again
            log.exception("approval of unit %s failed unexpectedly", registration_id)
        finally:
            with self._lock:
                self._in_flight.discard(registration_id)


def approve_unit(ctx: Context, approver: Approver, registration_id: str) -> None:
    """Ask the MES about one unit still waiting in `scanned`, then apply the answer."""
    with ctx.uow_factory() as uow:
        unit = uow.units.get(registration_id)
    if unit is None or unit.state is not UnitState.SCANNED:
        return
    asked_for = unit.stage_times.get(UnitState.SCANNED.value)  # which scan this request is about
    decision, problem = _decide(ctx, approver, request_of(unit))
    with ctx.uow_factory() as uow:
        unit = uow.units.get(registration_id, for_update=True)
        if (
            unit is None
            or unit.state is not UnitState.SCANNED
            or unit.stage_times.get(UnitState.SCANNED.value) != asked_for
        ):
            return  # rescanned or moved on meanwhile: that scan has its own request
        if decision is None:
            fail_unit(uow, ctx, unit, stage=STAGE, reason=problem, retryable=True, actor=ACTOR)
        else:
            _apply(uow, ctx, unit, decision)
        uow.commit()
    ctx.notify_outbox()


def _decide(
    ctx: Context, approver: Approver, request: ApprovalRequest
) -> tuple[ApprovalDecision | None, str]:
    settings = ctx.settings
    try:
        decision = ask(approver, request, settings.approval_retries)
        _check_hub(ctx, decision)
        return decision, ""
    except (ApprovalUnavailable, ApprovalError) as exc:
        if settings.approval_fail_mode == "open":
            reason = f"{exc}; allowed because approval_fail_mode = open"
            return ApprovalDecision(allowed=True, reason=reason, source="fail-open"), ""
        return None, (
            f"MES approval not obtained: {exc}; the unit waits (approval_fail_mode = closed) and is "
            "asked again by the reconciler; check the MES or rescan the unit"
        )


def _check_hub(ctx: Context, decision: ApprovalDecision) -> None:
    hubs = {h.lower() for h in ctx.settings.iot_hubs}
    if decision.iot_hub and decision.iot_hub not in hubs:
        raise ApprovalError(
            f"answer chose iot_hub {decision.iot_hub!r}, which is not one of the linked hubs (iot_hubs)"
        )


def _apply(uow: UnitOfWork, ctx: Context, unit: Unit, decision: ApprovalDecision) -> None:
    uow.approvals.put(unit.registration_id, decision, ctx.clock())
    detail: dict[str, object] = {"source": decision.source, "tags": decision.tags}
    if decision.iot_hub:
        detail["iot_hub"] = decision.iot_hub
    if decision.allowed:
        audit(uow, ctx, unit, "unit.approved", ACTOR, reason=decision.reason, **detail)
        give_key(uow, ctx, unit)
        return
    reason = f"denied by the MES: {decision.reason}"
    unit.transition(UnitState.QUARANTINED, ctx.clock())
    unit.failure = Failure(stage=STAGE, reason=reason, retryable=False)  # the reason stays on the unit
    record_transition(uow, ctx, unit, ACTOR, reason=reason, **detail)
    ctx.emit_unit_event(
        uow,
        UnitQuarantined(registration_id=unit.registration_id, reason=reason, conflicting_registration_id=""),
    )
    notice = UnitRefused(
        station=unit.station,
        port=unit.port or "",
        kind="quarantined",
        reason=reason,
        registration_id=unit.registration_id,
        serial=unit.serial,
        mac=unit.mac,
    )  # the station shows the MES's reason and stops waiting for a config
    ctx.emit(uow, notice, ctx.topics.station_command(unit.line, unit.station, UnitRefused.NAME))
