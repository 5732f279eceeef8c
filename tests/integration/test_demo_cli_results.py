"""`edgeline demo` leaves its units where the audit commands look, and a second run starts afresh.

Runs the real CLI in a subprocess in an empty folder with no settings: the embedded broker, the
emulator and the default SQLite file `.edgeline/edgeline.db` of that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def edgeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELINE_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def demo_units(cwd: Path) -> list[dict[str, object]]:
    listed = edgeline("audit", "units", "--format", "json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    units: list[dict[str, object]] = json.loads(listed.stdout)
    return units


def test_audit_after_demo_shows_the_demo_units_and_a_rerun_replaces_them(tmp_path: Path) -> None:
    first = edgeline("demo", "--units", "2", "--stations", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "edgeline audit units" in first.stdout and "edgeline audit unit sn-" in first.stdout
    units = demo_units(tmp_path)
    assert len(units) == 2 and {u["state"] for u in units} == {"assigned"}

    table = edgeline("audit", "units", cwd=tmp_path)
    assert table.returncode == 0 and str(units[0]["registration_id"]) in table.stdout

    second = edgeline("demo", "--units", "3", "--stations", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    rerun = demo_units(tmp_path)
    before = {u["registration_id"] for u in units}
    assert len(rerun) == 3 and not {u["registration_id"] for u in rerun} & before
    assert edgeline("audit", "verify", cwd=tmp_path).returncode == 0
