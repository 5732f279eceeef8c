"""`edgeline up --metrics-listen`: a Prometheus scrape of the running workers counts what they did.

Separate processes (emulator, workers, a station with simulated devices) on a private Mosquitto and a
private PostgreSQL database, as in test_processes_kill (whose `line` fixture this reuses).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for_port
from e2e_helpers import edgeline
from test_processes_kill import _spawn, _states, _wait, line  # noqa: F401 (`line` is a fixture)

UNITS = 4
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(400)]


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{series} not in the scrape"
    return float(match.group(1))


def test_workers_metrics_count_stages_dps_calls_and_units(line: dict[str, object]) -> None:  # noqa: F811
    env, tmp, pg_url = line["env"], line["tmp"], line["pg_url"]
    assert isinstance(tmp, Path) and isinstance(env, dict) and isinstance(pg_url, str)
    processes = line["processes"]
    assert isinstance(processes, list)
    assert edgeline("db", "upgrade", env=env).returncode == 0
    init = edgeline("station", "init", "--key-file", str(tmp / "S1.key"), env=env)
    assert edgeline("station", "add", "S1", f"--public-key={init.stdout.strip()}", env=env).returncode == 0
    port = free_port()
    processes.append(_spawn("up", "--metrics-listen", f"127.0.0.1:{port}", env=env, log=tmp / "up.log"))
    wait_for_port(port, timeout=60)
    station_args = ["--watch-dir", str(tmp / "ports"), "--devices-dir", str(tmp / "devices")]
    processes.append(
        _spawn(
            "station",
            "run",
            "--name",
            "S1",
            "--key-file",
            str(tmp / "S1.key"),
            *station_args,
            "--simulate",
            str(UNITS),
            env=env,
            log=tmp / "station.log",
        )
    )
    _wait(lambda: _states(pg_url).get("assigned", 0) == UNITS, 300, f"{UNITS} assigned; logs in {tmp}")

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    assert _value(text, 'edgeline_stage_total{outcome="ok",stage="scanned"}') >= UNITS
    assert _value(text, 'edgeline_stage_total{outcome="ok",stage="flashed"}') >= UNITS
    assert _value(text, 'edgeline_stage_seconds_count{stage="scanned"}') >= UNITS
    assert _value(text, 'edgeline_units{state="assigned"}') == UNITS
    dps_ok = sum(
        float(v)
        for v in re.findall(
            r'^edgeline_dps_operations_total\{operation="\w+",status="2\d\d"\} (\S+)$', text, re.MULTILINE
        )
    )
    assert dps_ok >= UNITS  # at least one enrollment PUT per unit (individual mode)
    assert "edgeline_outbox_lag_seconds" in text
