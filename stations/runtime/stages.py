"""Where each port is in a device's visit, as the operator sees it (the `on_stage` hook).

Responsible for: the stage names and the detail that goes with a stage change.
Not responsible for: drawing anything (`stations.runtime.operator_view`) or deciding stages
(`stations.runtime.port_worker`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal[
    "waiting",
    "identifying",
    "scanned",
    "flashing",
    "verifying",
    "PASS",
    "FAIL",
    "FLASHED",
    "ASSIGNED",
    "OVERDUE",
]
"""`FLASHED`: config written and verified, DPS has not assigned the device yet; `ASSIGNED` follows when
the pipeline says DPS assigned it, `OVERDUE` when it has waited too long (a `unit.notice`)."""


@dataclass(frozen=True, slots=True)
class StageDetail:
    """What is known at a stage change: a plain-words note, and the device once identified."""

    text: str = ""
    serial: str | None = None
    mac: str | None = None
    registration_id: str | None = None


StageHook = Callable[[str, Stage, StageDetail], None]
"""`on_stage(port, stage, detail)`: called from port worker threads; must be quick and never raise."""
