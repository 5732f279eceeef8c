"""Device-side IoT Edge checks at the station: `iotedge system status` and `iotedge check --output json`.

Responsible for: reading the two commands' output (pure parsers raising `ParseError`) and turning it
into a verdict in the tools' own words: every aziot service must be `Running` (or `Ready`: socket
activated), and no check may end `error` or `fatal` (warnings are kept in the summary). `iotedge check`
prints `{"additional_info": ..., "checks": {id: {"result": {"result": "ok"|"warning"|"error"|...,
"details": [...]}}}}`, newer versions one JSON object per line (`{"kind": "check", "id": ..., ...}`);
both are read. The JSON is one line of several KB, longer than the station's serial line limit, so it
is written to a file and read back through `fold -w 512`, then joined again (`fold` adds only newlines).
A device without `iotedge check` (exit 127) is checked with `system status` alone.
Not responsible for: running commands (the console driver) or deciding when (ConsoleOptions.edge_checks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stations.drivers.linux_console.parsing import CommandResult
from stations.errors import FlashError, ParseError

STATUS_COMMAND = "iotedge system status"
CHECK_COMMAND = "iotedge check --output json"
CHECK_FILE = "/tmp/edgeline-iotedge-check.json"
FOLD_WIDTH = 512
HEALTHY = frozenset({"running", "ready"})
FAILING = frozenset({"error", "fatal"})
NOT_FOUND = 127


@dataclass(frozen=True, slots=True)
class EdgeCheckOutcome:
    """What the checks found: problems (empty = pass) and a one-line summary."""

    problems: tuple[str, ...]
    summary: str


def parse_system_status(result: CommandResult) -> dict[str, str]:
    """Service name -> status from `iotedge system status` (lines like `    aziot-edged   Running`)."""
    services: dict[str, str] = {}
    for line in result.lines:
        name, _, status = line.strip().partition(" ")
        if name.startswith("aziot-") and status.strip():
            services[name] = status.strip()
    if not services:
        raise ParseError(f"`{STATUS_COMMAND}` printed no aziot services: {result.tail()!r}")
    return services


def _json_objects(text: str) -> list[Any]:
    """Consecutive JSON values in `text` (one document, or one object per line joined together)."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            raise ParseError(
                f"`{CHECK_COMMAND}` printed something that is not JSON near {text[index : index + 40]!r}"
            ) from None
        values.append(value)
    return values


def _check_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for value in _json_objects(text):
        if isinstance(value, dict) and isinstance(value.get("checks"), dict):
            found += [(str(k), v) for k, v in value["checks"].items() if isinstance(v, dict)]
        elif isinstance(value, dict) and value.get("kind") == "check":
            found.append((str(value.get("id") or "?"), value))
    return found


def parse_check_json(result: CommandResult) -> dict[str, tuple[str, list[str]]]:
    """Check id -> (result, details) from `iotedge check --output json` output read back with `fold`."""
    checks: dict[str, tuple[str, list[str]]] = {}
    for check_id, item in _check_objects("".join(result.lines)):
        outcome = item.get("result")
        if isinstance(outcome, dict):
            details = outcome.get("details")
            words = [str(d) for d in details] if isinstance(details, list) else []
            checks[check_id] = (str(outcome.get("result") or "unknown"), words)
    if not checks:
        raise ParseError(f"`{CHECK_COMMAND}` printed no check results: {result.tail()!r}")
    return checks


def judge_checks(
    services: dict[str, str], checks: dict[str, tuple[str, list[str]]] | None
) -> EdgeCheckOutcome:
    """Problems in the tools' own words, and a summary like `5 services running; 12 checks ok, 1 warning`."""
    problems = [f"{name} is {status}" for name, status in services.items() if status.lower() not in HEALTHY]
    summary = f"{len(services)} aziot services up" if not problems else "aziot services down"
    if checks is not None:
        for check_id, (outcome, details) in checks.items():
            if outcome in FAILING:
                problems.append(
                    f"iotedge check {check_id}: {outcome}" + (f": {details[0]}" if details else "")
                )
        counts = {k: sum(1 for o, _ in checks.values() if o == k) for k in ("ok", "warning", *FAILING)}
        summary += "; iotedge check: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return EdgeCheckOutcome(tuple(problems), summary)


def run_edge_checks(run: Callable[[str], CommandResult]) -> EdgeCheckOutcome:
    """Run both commands through `run`; FlashError (not retryable) with the tools' words if any fails."""
    status = run(STATUS_COMMAND)
    if status.rc == NOT_FOUND:
        raise FlashError("`iotedge` is not installed on the device: install IoT Edge first", retryable=False)
    services = parse_system_status(status)
    check = run(f"{CHECK_COMMAND} > {CHECK_FILE}")  # rc 1 = some check failed: read the results anyway
    checks = None
    if check.rc != NOT_FOUND:
        checks = parse_check_json(run(f"fold -w {FOLD_WIDTH} {CHECK_FILE}"))
        run(f"rm -f {CHECK_FILE}")
    outcome = judge_checks(services, checks)
    if outcome.problems:
        raise FlashError("IoT Edge check failed: " + "; ".join(outcome.problems)[:400], retryable=False)
    return outcome
