"""What a station tells its operator about each device: PASS or FAIL with the reason in plain words."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

Outcome = Literal["PASS", "FAIL"]


@dataclass(frozen=True, slots=True)
class PortResult:
    """The end of one device's visit to a port."""

    station: str
    port: str
    outcome: Outcome
    reason: str
    registration_id: str | None = None
    serial: str | None = None
    mac: str | None = None
    elapsed_seconds: float = 0.0
    at: float = field(default_factory=time.time)

    def json_line(self) -> str:
        """One JSON object per line, for line integration (MES, log shippers)."""
        return json.dumps(asdict(self), sort_keys=True)

    def human(self) -> str:
        """A line an operator reads at a glance.

        A PASS reads FLASHED: the station's part is done, the unit's is not until DPS assigns it (the
        station logs ASSIGNED or OVERDUE when the pipeline's `unit.notice` says so). `json_line` keeps
        `outcome` PASS/FAIL for machines.
        """
        who = self.registration_id or "unknown device"
        word = "FLASHED" if self.outcome == "PASS" else self.outcome
        return f"{word} {self.station}:{self.port} {who} ({self.elapsed_seconds:.1f} s) {self.reason}"
