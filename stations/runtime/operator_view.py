"""The operator's live view of a station: one row per port, redrawn in place on a terminal.

Responsible for: keeping the latest stage of every port (fed by the agent's `on_stage` hook and its
result sink) and drawing it as a rich table: port, device serial, MAC, stage, elapsed time, and the
outcome with its reason in plain words.
Not responsible for: deciding stages (`stations.runtime.port_worker`), log lines or JSON-lines output (the CLI
chooses this view only when stdout is a terminal), or anything on the bus.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stations.runtime.results import PortResult
from stations.runtime.stages import Stage, StageDetail

STYLES: dict[Stage, str] = {
    "waiting": "dim",
    "identifying": "cyan",
    "scanned": "cyan",
    "flashing": "yellow",
    "verifying": "yellow",
    "PASS": "bold green",
    "FAIL": "bold red",
    "FLASHED": "green",
    "ASSIGNED": "bold green",
    "OVERDUE": "bold yellow",
}
_VISIT_STARTS: set[Stage] = {"identifying", "scanned"}
_DONE: set[Stage] = {"PASS", "FAIL", "FLASHED", "ASSIGNED", "OVERDUE"}


@dataclass(slots=True)
class PortRow:
    """What the operator sees for one port."""

    port: str
    stage: Stage = "waiting"
    serial: str = ""
    mac: str = ""
    note: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started


class Board:
    """Thread-safe state of every port's row; `render()` draws it."""

    def __init__(self, station: str) -> None:
        self.station = station
        self._rows: dict[str, PortRow] = {}
        self._lock = threading.Lock()
        self.passed = self.failed = 0

    def on_stage(self, port: str, stage: Stage, detail: StageDetail) -> None:
        """The agent's `on_stage` hook."""
        with self._lock:
            row = self._rows.setdefault(port, PortRow(port))
            if stage in _VISIT_STARTS and (row.stage in _DONE or row.stage == "waiting"):
                row.started, row.ended, row.serial, row.mac = time.monotonic(), None, "", ""
            row.stage, row.note = stage, detail.text
            row.serial, row.mac = detail.serial or row.serial, detail.mac or row.mac
            if stage in _DONE:
                row.ended = time.monotonic()

    def on_result(self, result: PortResult) -> None:
        """The agent's result sink: count outcomes (the row itself follows the PASS/FAIL stage)."""
        with self._lock:
            if result.outcome == "PASS":
                self.passed += 1
            else:
                self.failed += 1

    def rows(self) -> list[PortRow]:
        with self._lock:
            return [PortRow(**{k: getattr(r, k) for k in PortRow.__slots__}) for r in self._rows.values()]

    def render(self) -> Table:
        """The table as it stands now."""
        now = time.monotonic()
        table = Table(
            title=f"station {self.station} — {self.passed} passed, {self.failed} failed",
            expand=True,
        )
        for name in ("port", "serial", "MAC", "stage", "time"):
            table.add_column(name, no_wrap=True)
        table.add_column("result / reason", ratio=1)
        for row in sorted(self.rows(), key=lambda r: r.port):
            table.add_row(
                row.port,
                row.serial or "—",
                row.mac or "—",
                Text(row.stage, style=STYLES[row.stage]),
                f"{row.elapsed(now):5.1f} s",
                row.note,
            )
        return table


class OperatorView:
    """A rich Live display of a `Board`, redrawn a few times a second; use as a context manager."""

    def __init__(self, board: Board, console: Console | None = None) -> None:
        self.board = board
        self._live = Live(get_renderable=board.render, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> OperatorView:
        self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()
