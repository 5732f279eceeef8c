"""Workers die or are replaced mid-run; the line still ends with every unit assigned exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from harness import FaultLine, assert_healthy

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.timeout(420)]
UNITS = 30


def test_baseline_no_fault(tmp_path: Path) -> None:
    with FaultLine(tmp_path, units=UNITS) as line:
        line.start()
        outcome = line.settle("baseline (no fault)", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


@pytest.mark.parametrize("victim", ["worker-0", "worker-1"])
def test_sigkill_of_one_worker(tmp_path: Path, victim: str) -> None:
    with FaultLine(tmp_path, units=UNITS) as line:
        line.start()
        line.wait_scanned(8)
        line.signal(victim, signal.SIGKILL)
        line.start_worker(int(victim[-1]))
        outcome = line.settle(f"SIGKILL {victim}, restarted", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


def test_sigkill_of_all_workers(tmp_path: Path) -> None:
    with FaultLine(tmp_path, units=UNITS) as line:
        line.start()
        line.wait_scanned(8)
        line.signal("worker-0")
        line.signal("worker-1")
        time.sleep(3)  # the station keeps scanning into the broker meanwhile
        line.start_worker(0)
        line.start_worker(1)
        outcome = line.settle("SIGKILL all workers, restarted", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


def test_worker_replaced_under_a_new_client_id(tmp_path: Path) -> None:
    """The old session (and what the broker queued for it) is abandoned: the reconciler must cover it."""
    with FaultLine(tmp_path, units=UNITS) as line:
        line.start()
        line.wait_scanned(8)
        line.signal("worker-1")
        line.start_worker(1, client_id="faults-worker-1-replacement")
        outcome = line.settle("worker replaced, new client id", time.monotonic())
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(900)
def test_slow_sigkill_of_all_workers_with_200_units(tmp_path: Path) -> None:
    """The longer variant: a few hundred units, the workers SIGKILLed twice while they stream through."""
    with FaultLine(tmp_path, units=200, station_args=("--fixtures", "8")) as line:
        line.start()
        for scanned in (40, 120):
            line.wait_scanned(scanned, timeout=300)
            line.signal("worker-0")
            line.signal("worker-1")
            line.start_worker(0)
            line.start_worker(1)
        outcome = line.settle("slow: SIGKILL all workers twice, 200 units", time.monotonic(), timeout=400)
        assert line.station_exit() == 0, line.log_tail("station")
    assert_healthy(outcome)
