"""Liveness verdicts (pipeline.service.liveness.judge) from hub identities and `$edgeAgent` twin shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.azure.ports import HubDevice, ModuleTwin
from pipeline.domain.model import EnrollmentMode, TransitionError, Unit, UnitState
from pipeline.service.liveness import judge
from stations.simulation.edge_runtime import edge_agent_report

HUB = "hub-1.azure-devices.net"
EDGE = HubDevice(device_id="d1", iot_edge=True, status="enabled", tags={})
DEPLOYED = {"systemModules": {"edgeAgent": {"type": "docker"}, "edgeHub": {"type": "docker"}}}


def agent(reported: dict[str, Any], desired: dict[str, Any] | None = None) -> ModuleTwin:
    return ModuleTwin("d1", "$edgeAgent", desired=desired or {}, reported={**reported, "$version": 3})


def test_running_runtime_is_online() -> None:
    verdict = judge(HUB, "d1", EDGE, agent(edge_agent_report("running"), DEPLOYED))
    assert verdict.online and verdict.reason == "IoT Edge runtime running"


def test_runtime_that_never_reported_is_not_online_yet() -> None:
    verdict = judge(HUB, "d1", EDGE, agent({}))
    assert not verdict.online and not verdict.final
    assert verdict.reason.startswith("never connected")
    assert judge(HUB, "d1", EDGE, None).reason.startswith("never connected")


def test_edge_agent_not_running_is_a_runtime_error_with_its_own_words() -> None:
    reported = edge_agent_report("running")
    reported["systemModules"]["edgeAgent"].update(runtimeStatus="unhealthy", statusDescription="disk full")
    verdict = judge(HUB, "d1", EDGE, agent(reported))
    assert verdict.reason == "runtime error: edgeAgent is unhealthy (disk full)"


def test_failed_deployment_is_a_runtime_error() -> None:
    verdict = judge(HUB, "d1", EDGE, agent(edge_agent_report("runtime_error")))
    assert not verdict.online
    assert "lastDesiredStatus 500" in verdict.reason


def test_no_deployment_yet_417_does_not_block_online() -> None:
    reported = edge_agent_report("running")
    reported["lastDesiredStatus"] = {
        "code": 417,
        "description": "The device's deployment configuration is not set",
    }
    del reported["systemModules"]["edgeHub"]
    assert judge(HUB, "d1", EDGE, agent(reported)).online


def test_edge_hub_is_required_once_a_deployment_targets_the_device() -> None:
    reported = edge_agent_report("running")
    reported["systemModules"]["edgeHub"].update(runtimeStatus="backoff", statusDescription="exit 139")
    assert judge(HUB, "d1", EDGE, agent(reported)).online  # no deployment: edgeHub is not expected yet
    verdict = judge(HUB, "d1", EDGE, agent(reported, DEPLOYED))
    assert verdict.reason == "runtime error: edgeHub is backoff (exit 139)"


def test_device_missing_from_its_hub_is_the_wrong_hub() -> None:
    verdict = judge(HUB, "d1", None, None)
    assert verdict.reason.startswith("wrong hub: device d1 is not in hub hub-1")
    assert not verdict.final


@pytest.mark.parametrize(
    ("device", "words"),
    [
        (HubDevice("d1", iot_edge=False, status="enabled", tags={}), "is not an IoT Edge device"),
        (HubDevice("d1", iot_edge=True, status="disabled", tags={}), "is disabled in hub"),
    ],
)
def test_identity_problems_are_final(device: HubDevice, words: str) -> None:
    verdict = judge(HUB, "d1", device, agent(edge_agent_report("running")))
    assert verdict.final and words in verdict.reason


def make_unit(state: UnitState) -> Unit:
    return Unit("sn-1-mac-aa", "1", "aa:aa:aa:aa:aa:aa", "L1", "S1", EnrollmentMode.GROUP, state=state)


@pytest.mark.parametrize("target", [UnitState.ONLINE, UnitState.NOT_ONLINE, UnitState.REVOKED])
def test_assigned_goes_online_not_online_or_revoked(target: UnitState) -> None:
    unit = make_unit(UnitState.ASSIGNED)
    unit.transition(target, datetime.now(UTC))
    assert unit.state is target


@pytest.mark.parametrize("source", [UnitState.ONLINE, UnitState.NOT_ONLINE])
def test_online_states_can_be_revoked_and_rescanned_but_not_go_back(source: UnitState) -> None:
    now = datetime.now(UTC)
    make_unit(source).transition(UnitState.REVOKED, now)
    unit = make_unit(source)
    unit.rescan(now)
    assert unit.state is UnitState.SCANNED
    with pytest.raises(TransitionError):
        make_unit(source).transition(UnitState.ASSIGNED, now)


def test_only_not_online_may_still_come_online() -> None:
    now = datetime.now(UTC)
    make_unit(UnitState.NOT_ONLINE).transition(UnitState.ONLINE, now)
    with pytest.raises(TransitionError):
        make_unit(UnitState.ONLINE).transition(UnitState.NOT_ONLINE, now)
