"""What `edgeline station run` shows and writes: the live operator view or plain lines, and JSON lines.

Responsible for: choosing the live table (stdout is a terminal) or one plain line per result (stdout is
a pipe or file), and appending one JSON object per PortResult to `--jsonl FILE` (flushed per line, so
a line-integration reader tailing it sees results as they happen). While the live table is shown,
log records are printed above it on the same console (pipeline.cli.live_logs).
Not responsible for: the station itself (`stations.runtime.process`) or what a stage
means (`stations.runtime.stages`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO

from rich.console import Console

from pipeline.cli.live_logs import logs_above
from pipeline.cli.main import CommandError
from stations.runtime.operator_view import Board, OperatorView
from stations.runtime.results import PortResult
from stations.runtime.stages import StageHook


class StationOutput:
    """Result and stage sinks for one station run; use as a context manager around the run."""

    def __init__(self, station: str, *, jsonl: Path | None, live: bool | None = None) -> None:
        self._live = sys.stdout.isatty() if live is None else live
        self._jsonl_path = jsonl
        self._jsonl: IO[str] | None = None
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self.board = Board(station)
        self.extra: list[Callable[[PortResult], None]] = []

    @property
    def on_stage(self) -> StageHook | None:
        return self.board.on_stage if self._live else None

    def __enter__(self) -> StationOutput:
        if self._jsonl_path is not None:
            try:
                self._jsonl = self._stack.enter_context(self._jsonl_path.open("a", encoding="utf-8"))
            except OSError as exc:
                raise CommandError(f"cannot write --jsonl {self._jsonl_path}: {exc.strerror}", 2) from None
        if self._live:
            console = Console()
            self._stack.enter_context(OperatorView(self.board, console))
            self._stack.enter_context(logs_above(console))  # log lines go above the table, not into it
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def on_result(self, result: PortResult) -> None:
        """The station's result sink."""
        with self._lock:
            if self._jsonl is not None:
                self._jsonl.write(result.json_line() + "\n")
                self._jsonl.flush()
            if self._live:
                self.board.on_result(result)
            else:
                print(result.human(), flush=True)
        for sink in self.extra:
            sink(result)
