"""Parsers of `iotedge system status` and `iotedge check --output json`, on outputs shaped as IoT Edge
prints them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from stations.drivers.linux_console.edge_checks import (
    judge_checks,
    parse_check_json,
    parse_system_status,
    run_edge_checks,
)
from stations.drivers.linux_console.parsing import CommandResult
from stations.drivers.linux_console.simulated_iotedge import check_json, system_status
from stations.errors import FlashError, ParseError

STATUS = CommandResult(0, tuple(system_status(broken=False)[1].splitlines()))


def folded(text: str, width: int = 64) -> CommandResult:
    """What `fold -w WIDTH` prints for `text` (one long line), as the console session returns it."""
    lines = [line[i : i + width] for line in text.splitlines() for i in range(0, len(line), width)]
    return CommandResult(0, tuple(lines))


def test_system_status_lists_services() -> None:
    services = parse_system_status(STATUS)
    assert services["aziot-edged"] == "Running" and services["aziot-tpmd"] == "Ready"


def test_system_status_without_services_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_system_status(CommandResult(0, ("Error: could not connect to aziot-edged",)))


def test_batch_json_read_back_through_fold() -> None:
    _, text = check_json(configured=True, broken=True)
    checks = parse_check_json(folded(text))
    assert checks["config-toml-well-formed"] == ("ok", [])
    assert checks["host-connect-dps-endpoint"][0] == "error"
    assert checks["host-connect-dps-endpoint"][1][0].startswith("Could not connect")


def test_streaming_json_objects_one_per_line() -> None:
    lines = [
        {"kind": "additional_info", "os": {"id": "debian"}},
        {"kind": "section", "name": "Configuration checks"},
        {"kind": "check", "id": "certs-preloaded", "description": "...", "result": {"result": "ok"}},
        {
            "kind": "check",
            "id": "aziot-edged-running",
            "result": {"result": "fatal", "details": ["not running"]},
        },
    ]
    checks = parse_check_json(folded("\n".join(json.dumps(item) for item in lines)))
    assert checks == {"certs-preloaded": ("ok", []), "aziot-edged-running": ("fatal", ["not running"])}


@pytest.mark.parametrize("garbage", ["", "Usage: iotedge check [OPTIONS]", '{"checks": {}}', '{"checks": '])
def test_unusable_check_output_is_a_parse_error(garbage: str) -> None:
    with pytest.raises(ParseError):
        parse_check_json(CommandResult(1, (garbage,)))


def test_warnings_pass_errors_fail_and_stopped_services_fail() -> None:
    services = {"aziot-edged": "Running", "aziot-keyd": "Stopped"}
    outcome = judge_checks(services, {"a": ("ok", []), "b": ("warning", ["w"]), "c": ("error", ["boom"])})
    assert outcome.problems == ("aziot-keyd is Stopped", "iotedge check c: error: boom")
    ok = judge_checks({"aziot-edged": "Running"}, {"b": ("warning", ["w"])})
    assert ok.problems == () and ok.summary == "1 aziot services up; iotedge check: 1 warning"


def runner(answers: dict[str, CommandResult]) -> Callable[[str], CommandResult]:
    def run(command: str) -> CommandResult:
        return next((r for prefix, r in answers.items() if command.startswith(prefix)), CommandResult(0, ()))

    return run


def test_device_without_iotedge_check_is_judged_on_system_status() -> None:
    outcome = run_edge_checks(runner({"iotedge system": STATUS, "iotedge check": CommandResult(127, ())}))
    assert outcome.summary == "5 aziot services up"


def test_device_without_iotedge_at_all_is_a_permanent_failure() -> None:
    with pytest.raises(FlashError, match="not installed"):
        run_edge_checks(runner({"iotedge": CommandResult(127, ("sh: iotedge: not found",))}))
