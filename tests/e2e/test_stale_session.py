"""A worker SIGKILLed and replaced by one with a fresh client id: nothing stays stuck (issue #8 §2).

Every part is its own process (benchmarks/stale_session.py: Mosquitto, emulator, two `edgeline up`,
one simulated station, PostgreSQL). With the default session expiry (0) the dead worker's session is
gone with its socket: the broker holds nothing for it any more, and every unit reaches `assigned`.
Latency figures are the benchmark's job (printed, not asserted).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PG_SERVER
from e2e_helpers import REPO

sys.path.insert(0, str(REPO))

from benchmarks.stale_session import run

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.timeout(600)]


def test_after_a_kill_and_a_fresh_id_no_message_stays_with_the_dead_session(tmp_path: Path) -> None:
    args = argparse.Namespace(
        scenario="fresh-id",
        session_expiry=0,  # the default: the dead session is gone with its socket
        units=12,
        fixtures=4,
        kill_after=3,
        mode="group",
        timeout=300,
        reconcile_stuck=8,
    )
    db_name = f"edgeline_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')  # type: ignore[arg-type]
    try:
        figures = run(args, f"{PG_SERVER}/{db_name}", tmp_path)
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')  # type: ignore[arg-type]
    print(figures)
    assert figures["all_assigned"], figures
    assert figures["assigned"] == 12
    assert figures["held_for_dead_session_at_end"] == 0, figures  # expired: nothing queued for the dead
