"""The operator's board: rows follow stage events; the table shows stage, device and plain reasons."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.cli.station_output import StationOutput
from stations.runtime.operator_view import Board
from stations.runtime.results import PortResult
from stations.runtime.stages import StageDetail


def _text(board: Board) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(board.render())
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_a_visit_from_waiting_to_pass() -> None:
    board = Board("S1")
    board.on_stage("/dev/ttyUSB0", "waiting", StageDetail("no such port"))
    board.on_stage("/dev/ttyUSB0", "identifying", StageDetail())
    board.on_stage("/dev/ttyUSB0", "scanned", StageDetail("waiting for the config", "007-888-ABC", "a1:b2"))
    board.on_stage("/dev/ttyUSB0", "flashing", StageDetail("writing /etc/aziot/config.toml"))
    board.on_stage("/dev/ttyUSB0", "PASS", StageDetail("config written and verified"))
    (row,) = board.rows()
    assert (row.stage, row.serial, row.mac, row.ended is not None) == ("PASS", "007-888-ABC", "a1:b2", True)
    text = _text(board)
    assert "007-888-ABC" in text and "PASS" in text and "config written and verified" in text


def test_a_failure_shows_its_reason_and_the_next_device_starts_clean() -> None:
    board = Board("S1")
    board.on_stage("p1", "scanned", StageDetail("", "SN1", "m1"))
    board.on_stage("p1", "FAIL", StageDetail("no config arrived from the pipeline within 300 s"))
    assert "no config arrived" in _text(board)
    board.on_stage("p1", "scanned", StageDetail("", "SN2", "m2"))
    (row,) = board.rows()
    assert (row.serial, row.stage, row.ended) == ("SN2", "scanned", None)


def test_output_writes_json_lines_and_plain_lines_off_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = PortResult(station="S1", port="p1", outcome="FAIL", reason="device unplugged mid-flash")
    with StationOutput("S1", jsonl=tmp_path / "r.jsonl", live=False) as output:
        assert output.on_stage is None
        output.on_result(result)
    assert json.loads((tmp_path / "r.jsonl").read_text()) == json.loads(result.json_line())
    assert capsys.readouterr().out == result.human() + "\n"
