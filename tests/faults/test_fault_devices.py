"""Hostile and unplugged devices on a running line: they fail at the station with a reason, or pass
verified; they never crash a worker, never reach `flashed` unverified, never disturb the good devices.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import FaultLine, assert_healthy

from stations.simulation.hostile import KINDS, MAY_PASS, hostile_plan

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.timeout(420)]


def _run_hostile(tmp_path: Path, scenario: str, kinds: tuple[str, ...], units: int, every: int) -> None:
    args = ("--sim-hostile", ",".join(kinds), "--sim-hostile-every", str(every), "--flash-timeout", "20")
    with FaultLine(tmp_path, units=units, station_args=args) as line:
        line.start()
        plan = hostile_plan(units, kinds, every)
        good = line.serials(set(range(units)) - set(plan))
        outcome = line.settle(scenario, time.monotonic(), good=good)
        assert line.station_exit() == 1, "the station must report its failed devices"
        for name in ("worker-0", "worker-1"):
            assert line.processes[name].poll() is None, f"{name} died: {line.log_tail(name)}"
        must_fail = line.serials({i for i, kind in plan.items() if kind not in MAY_PASS})
        rows = line.sql("SELECT serial, state FROM units")
        wrongly = [(s, state) for s, state in rows if s in must_fail and state in ("flashed", "assigned")]
        assert not wrongly, f"hostile devices provisioned: {wrongly}"
        fails = [ln for ln in line.log_tail("station", 200_000).splitlines() if ln.startswith("FAIL")]
        assert len(fails) >= len(must_fail) and all(ln.split(")", 1)[1].strip() for ln in fails), fails
    assert_healthy(outcome)


def test_hostile_devices(tmp_path: Path) -> None:
    _run_hostile(tmp_path, "hostile devices (all kinds)", KINDS, units=40, every=4)


def test_device_unplugged_mid_flash(tmp_path: Path) -> None:
    _run_hostile(tmp_path, "device unplugged mid-flash", ("vanish",), units=30, every=5)
