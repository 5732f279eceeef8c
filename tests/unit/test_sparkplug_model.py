"""Sparkplug metrics of the line (pure): per-state counts, yield, last failure, report by exception."""

from __future__ import annotations

from pathlib import Path

from pipeline.domain.model import UnitState
from pipeline.sparkplug.model import Kind, LineSnapshot, StationState, changed, metrics_of, yield_of
from pipeline.sparkplug.publisher import SEQ_LIMIT, Session, next_bd_seq


def test_yield_counts_finished_units_only() -> None:
    assert yield_of({}) == 0.0
    assert yield_of({"scanned": 5, "flashed": 3}) == 0.0  # nothing finished yet
    assert yield_of({"assigned": 2, "online": 1, "failed": 1}) == 0.75
    assert yield_of({"online": 1, "not_online": 1, "quarantined": 4}) == 0.5


def test_every_state_has_a_metric_even_at_zero() -> None:
    metrics = {m.name: m for m in metrics_of(StationState({"assigned": 2}, "u1: enroll: refused"))}
    assert {f"units/{s.value}" for s in UnitState} <= set(metrics)
    assert metrics["units/assigned"].value == 2 and metrics["units/keyed"].value == 0
    assert metrics["units/total"].value == 2
    assert (metrics["yield"].kind, metrics["yield"].value) == (Kind.DOUBLE, 1.0)
    assert (metrics["last failure"].kind, metrics["last failure"].value) == (
        Kind.STRING,
        "u1: enroll: refused",
    )


def test_line_sums_its_stations() -> None:
    snapshot = LineSnapshot(
        {"S1": StationState({"assigned": 1, "failed": 1}, "a"), "S2": StationState({"assigned": 2}, "")}
    )
    line = snapshot.line_state()
    assert line.counts == {"assigned": 3, "failed": 1} and line.last_failure == "a"


def test_only_changed_metrics_are_reported() -> None:
    before = metrics_of(StationState({"assigned": 1}))
    after = metrics_of(StationState({"assigned": 2}))
    assert changed(None, after) == after
    assert [m.name for m in changed(before, after)] == ["units/assigned", "units/total"]
    assert changed(after, after) == []


def test_bd_seq_goes_up_per_start_and_wraps(tmp_path: Path) -> None:
    path = tmp_path / "bdseq"
    assert [next_bd_seq(path) for _ in range(3)] == [0, 1, 2]
    path.write_text(f"{SEQ_LIMIT - 1}\n")
    assert next_bd_seq(path) == 0
    path.write_text("garbage")
    assert next_bd_seq(path) == 0


def test_session_takes_a_new_bdseq_per_connect_even_without_a_writable_state_dir(tmp_path: Path) -> None:
    session = Session("G", "N", tmp_path / "bdseq")
    wills = [session.next_will() for _ in range(2)]
    assert session.bd_seq == 1 and wills[0].topic == "spBv1.0/G/NDEATH/N" and not wills[0].retain
    blocked = tmp_path / "file"
    blocked.write_text("")
    stuck = Session("G", "N", blocked / "bdseq")  # its parent is a file: cannot be created
    assert [stuck.next_will() and stuck.bd_seq for _ in range(3)] == [0, 1, 2]
