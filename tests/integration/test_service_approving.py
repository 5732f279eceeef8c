"""MES pre-provisioning approval on a real database, a real HTTP stub MES and the DPS emulator."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import service_helpers
from service_helpers import HUB, World, deliver, new_identity, scan

from pipeline.domain.events import FlashConfig, UnitKeyed, UnitQuarantined, UnitRefused
from pipeline.domain.model import UnitState
from pipeline.mes.command import CommandApprover
from pipeline.mes.stub import StubMes
from pipeline.mes.webhook import WebhookApprover
from pipeline.service import enrolling
from pipeline.service.approving import ApprovalRunner
from pipeline.service.context import Context
from pipeline.service.keying import handle_scanned
from pipeline.service.reconciling import reconcile

shared_emulator = service_helpers.shared_emulator
world_fixture = service_helpers.world_fixture


@pytest.fixture
def mes() -> Iterator[StubMes]:
    with StubMes() as stub:
        yield stub


def approving(
    world: World, mes_url: str, mode: str = "group", **overrides: object
) -> tuple[Context, ApprovalRunner]:
    """A Context whose keyer hands scans to a running ApprovalRunner asking `mes_url` (a group-mode unit
    the MES allows goes on to `config_issued`)."""
    settings: dict[str, object] = {
        "approval_url": mes_url,
        "approval_retries": 1,
        "approval_timeout_seconds": 2.0,
    }
    ctx = world.line_ready(mode, **{**settings, **overrides})
    runner = ApprovalRunner(WebhookApprover(mes_url, timeout=ctx.settings.approval_timeout_seconds), 4)
    ctx = dataclasses.replace(ctx, request_approval=runner.submit)
    runner.bind(ctx)
    return ctx, runner


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def state_of(world: World, rid: str) -> UnitState:
    return world.unit(rid).state


def test_allowed_unit_is_keyed_after_the_mes_answers(world: World, mes: StubMes) -> None:
    mes.rules.tags = {"work_order": "WO-77"}
    ctx, runner = approving(world, mes.url)
    message = scan()
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.CONFIG_ISSUED)
    runner.stop()

    assert mes.requests[0]["serial"] == message.serial and mes.requests[0]["station"] == "S1"
    kinds = [r.kind for r in world.audit(message.registration_id)]
    assert kinds == [
        "unit.scanned",
        "unit.approval_requested",
        "unit.approved",
        "unit.keyed",
        "unit.enrolled",
        "unit.config_issued",
    ]
    with world.db.uow() as uow:
        decision = uow.approvals.get(message.registration_id)
    assert decision is not None and decision.allowed and decision.tags == {"work_order": "WO-77"}
    assert len(world.outbox_of(FlashConfig, message.registration_id)) == 1


def test_denied_unit_is_quarantined_with_the_mes_reason(world: World, mes: StubMes) -> None:
    serial, mac = new_identity()
    mes.rules.deny[serial] = "serial not in work order WO-12"
    ctx, runner = approving(world, mes.url)
    message = scan(serial, mac)
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.QUARANTINED)
    runner.stop()

    [(_, event)] = world.outbox_of(UnitQuarantined, message.registration_id)
    assert event.reason == "denied by the MES: serial not in work order WO-12"
    [(topic, notice)] = world.outbox_of(UnitRefused, message.registration_id)
    assert topic.endswith("/stations/S1/commands/unit.refused") and notice.reason == event.reason
    unit = world.unit(message.registration_id)
    assert unit.failure is not None and unit.failure.reason == event.reason  # on the unit row too
    assert world.outbox_of(UnitKeyed, message.registration_id) == []
    record = world.audit(message.registration_id)[-1]
    assert record.kind == "unit.quarantined" and record.actor.startswith("approver@worker:")


def test_mes_down_fails_closed_then_the_reconciler_asks_again(world: World, mes: StubMes) -> None:
    mes.rules.down = True
    ctx, runner = approving(world, mes.url, reconcile_stuck_seconds=30.0)
    message = scan()
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.FAILED)
    unit = world.unit(message.registration_id)
    assert unit.failure is not None and unit.failure.stage == "approval" and unit.failure.retryable
    assert "HTTP 503" in unit.failure.reason and "approval_fail_mode = closed" in unit.failure.reason
    assert len(mes.requests) == 2  # the first try and one retry

    mes.rules.down = False
    world.clock.advance(seconds=31)
    assert reconcile(ctx) == 1
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.CONFIG_ISSUED)
    runner.stop()


def test_fail_open_keys_the_unit_and_says_why(world: World, mes: StubMes) -> None:
    mes.rules.down = True
    ctx, runner = approving(world, mes.url, approval_fail_mode="open")
    message = scan()
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.CONFIG_ISSUED)
    runner.stop()
    approved = [r for r in world.audit(message.registration_id) if r.kind == "unit.approved"]
    assert approved[0].detail["source"] == "fail-open"
    assert "approval_fail_mode = open" in approved[0].detail["reason"]


def test_malformed_answer_is_a_clear_failure_and_the_unit_is_kept(world: World, mes: StubMes) -> None:
    serial, mac = new_identity()
    mes.rules.malformed.add(serial)
    ctx, runner = approving(world, mes.url)
    message = scan(serial, mac)
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.FAILED)
    runner.stop()
    failure = world.unit(message.registration_id).failure
    assert failure is not None and failure.retryable
    assert "answer is not JSON" in failure.reason and "MES webhook http://127.0.0.1" in failure.reason


def test_timeout_is_retried_then_failed(world: World, mes: StubMes) -> None:
    serial, mac = new_identity()
    mes.rules.delay_seconds[serial] = 3.0
    ctx, runner = approving(world, mes.url, approval_timeout_seconds=0.5, approval_retries=0)
    message = scan(serial, mac)
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.FAILED)
    runner.stop()
    failure = world.unit(message.registration_id).failure
    assert failure is not None and "unreachable" in failure.reason and "timed out" in failure.reason


def test_a_slow_answer_does_not_hold_up_other_units(world: World, mes: StubMes) -> None:
    slow_serial, slow_mac = new_identity()
    mes.rules.delay_seconds[slow_serial] = 4.0
    ctx, runner = approving(world, mes.url, approval_timeout_seconds=10.0)
    slow = scan(slow_serial, slow_mac)
    deliver(ctx, handle_scanned, slow)
    fast = [scan() for _ in range(3)]
    for message in fast:
        deliver(ctx, handle_scanned, message)
    wait_for(
        lambda: all(state_of(world, m.registration_id) is UnitState.CONFIG_ISSUED for m in fast), timeout=3.0
    )
    assert state_of(world, slow.registration_id) is UnitState.SCANNED  # still waiting for its answer
    wait_for(lambda: state_of(world, slow.registration_id) is UnitState.CONFIG_ISSUED)
    runner.stop()


def test_individual_enrollment_gets_the_mes_hub_and_tags(world: World, mes: StubMes) -> None:
    mes.rules.tags = {"customer": "ACME"}
    ctx, runner = approving(world, mes.url, "individual", iot_hubs=HUB)
    message = scan()
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.KEYED)
    runner.stop()
    deliver(
        ctx, enrolling.handle_keyed, UnitKeyed(registration_id=message.registration_id, mode="individual")
    )
    enrollment = ctx.dps.get_individual_enrollment(message.registration_id)
    assert enrollment is not None
    tags = enrollment.raw["initialTwin"]["tags"]
    assert tags["customer"] == "ACME" and tags["serial"] == message.serial


def test_a_hub_that_is_not_linked_is_refused(world: World, mes: StubMes) -> None:
    ctx, runner = approving(world, mes.url, iot_hubs=HUB)
    original = mes.answer

    def choose_unknown_hub(request: dict[str, object]) -> tuple[int, bytes]:
        original(request)
        return 200, b'{"decision": "allow", "iot_hub": "other-hub.azure-devices.net"}'

    mes.answer = choose_unknown_hub  # type: ignore[method-assign]
    message = scan()
    deliver(ctx, handle_scanned, message)
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.FAILED)
    runner.stop()
    failure = world.unit(message.registration_id).failure
    assert failure is not None and "not one of the linked hubs" in failure.reason


def test_lost_request_is_asked_again_by_the_reconciler(world: World, mes: StubMes) -> None:
    # No runner: the request is lost.
    ctx = world.line_ready(approval_url=mes.url, reconcile_stuck_seconds=30.0)
    message = scan()
    deliver(ctx, handle_scanned, message)
    assert state_of(world, message.registration_id) is UnitState.SCANNED
    runner = ApprovalRunner(WebhookApprover(mes.url, timeout=2.0), 4)
    ctx = dataclasses.replace(ctx, request_approval=runner.submit)
    runner.bind(ctx)
    world.clock.advance(seconds=31)
    assert reconcile(ctx) == 1
    wait_for(lambda: state_of(world, message.registration_id) is UnitState.CONFIG_ISSUED)
    runner.stop()


def test_local_command_approver(tmp_path: Path) -> None:
    script = tmp_path / "mes.py"
    script.write_text(
        "import json, sys\n"
        "unit = json.load(sys.stdin)\n"
        "ok = unit['serial'].startswith('A')\n"
        "print(json.dumps({'decision': 'allow' if ok else 'deny', 'reason': 'rule A*'}))\n"
    )
    approver = CommandApprover(f"{sys.executable} {script}", timeout=10.0)
    from pipeline.domain.approval import ApprovalRequest

    allowed = approver.decide(ApprovalRequest("sn-a1", "A1", "02:00:00:00:00:01", "S1", "line1", "p"))
    denied = approver.decide(ApprovalRequest("sn-b1", "B1", "02:00:00:00:00:02", "S1", "line1", "p"))
    assert allowed.allowed and not denied.allowed and denied.reason == "rule A*"
