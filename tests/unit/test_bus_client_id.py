"""MQTT client ids: unique per process by default, stable per instance, explicit wins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.bus.client_id import (
    MAX_LENGTH,
    TakeoverSuspicion,
    claim_instance_slot,
    takeover_message,
    worker_client_id,
)


def test_default_ids_differ_per_process_on_one_host() -> None:
    first = worker_client_id("worker", hostname="line-pc", pid=100)
    second = worker_client_id("worker", hostname="line-pc", pid=101)
    assert first == "edgeline-worker-line-pc-p100"
    assert first != second


def test_an_instance_gives_a_stable_id_whatever_the_pid() -> None:
    ids = {worker_client_id("worker", instance="2", hostname="line-pc", pid=pid) for pid in (1, 7, 99)}
    assert ids == {"edgeline-worker-line-pc-2"}


def test_an_explicit_id_is_used_as_given() -> None:
    assert worker_client_id("worker", explicit="my-id", instance="3", hostname="h", pid=1) == "my-id"


def test_long_host_names_are_cut_but_keep_the_instance_suffix() -> None:
    client_id = worker_client_id("worker", instance="12", hostname="x" * 200, pid=1)
    assert len(client_id) <= MAX_LENGTH
    assert client_id.endswith("-12")


def test_unsafe_characters_in_host_or_instance_are_replaced() -> None:
    assert worker_client_id("worker", instance="a/b+#", hostname="h st", pid=1) == "edgeline-worker-h-st-a-b-"


def test_the_takeover_line_names_the_settings_to_fix() -> None:
    line = takeover_message("edgeline-worker-h-1", "127.0.0.1:1883")
    assert "\n" not in line
    assert "'edgeline-worker-h-1'" in line and "session taken over" in line
    assert "EDGELINE_CLIENT_ID" in line and "EDGELINE_INSTANCE" in line


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _session(suspicion: TakeoverSuspicion, clock: FakeClock, lasting: float) -> bool:
    suspicion.connected()
    clock.now += lasting
    return suspicion.lost()


def test_three_short_sessions_in_a_row_look_like_a_takeover() -> None:
    clock = FakeClock()
    suspicion = TakeoverSuspicion(limit=3, short=10.0, clock=clock)
    assert [_session(suspicion, clock, 1.5) for _ in range(3)] == [False, False, True]


def test_a_long_session_or_a_failed_connect_in_between_resets_the_count() -> None:
    clock = FakeClock()
    suspicion = TakeoverSuspicion(limit=3, short=10.0, clock=clock)
    assert not _session(suspicion, clock, 1.0)
    assert not _session(suspicion, clock, 1.0)
    assert not _session(suspicion, clock, 600.0)  # a session that lived: not a collision
    assert not _session(suspicion, clock, 1.0)
    suspicion.connect_failed()  # the broker was unreachable: an outage, not a takeover
    assert not _session(suspicion, clock, 1.0)
    assert not _session(suspicion, clock, 1.0)


def test_a_loss_without_a_session_counts_nothing() -> None:
    assert not TakeoverSuspicion(limit=1).lost()


def test_instance_slots_are_unique_while_held(tmp_path: Path) -> None:
    first = claim_instance_slot("worker", tmp_path)
    second = claim_instance_slot("worker", tmp_path)
    other_role = claim_instance_slot("station", tmp_path)
    assert (first, second, other_role) == ("1", "2", "1")


_CLAIM_AND_DIE = """
import os, sys
from pathlib import Path
from pipeline.bus.client_id import claim_instance_slot
print(claim_instance_slot("worker", Path(sys.argv[1])), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_killed_process_frees_its_slot_for_its_replacement(tmp_path: Path) -> None:
    runs = [
        subprocess.run([sys.executable, "-c", _CLAIM_AND_DIE, str(tmp_path)], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["1", "1"]  # SIGKILL released the lock: same id again
