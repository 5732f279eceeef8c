"""The offline spool on a real folder: order, durability across reopen, torn writes, the size bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from stations.runtime.spool import EVENTS, SENT, Spool, SpoolFull


def _fill(spool: Spool, count: int) -> None:
    for index in range(count):
        spool.append(f"id-{index}", f"t/{index}", f'{{"n":{index}}}'.encode())


def test_append_iterate_mark_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _fill(spool, 3)
    assert [e.event_id for e in spool.pending()] == ["id-0", "id-1", "id-2"]
    first = spool.first()
    assert first is not None and first.payload == b'{"n":0}' and first.topic == "t/0"
    spool.mark_sent(first)
    assert [e.event_id for e in spool.pending()] == ["id-1", "id-2"]
    assert spool.is_pending("id-1") and not spool.is_pending("id-0")


def test_a_reopened_spool_keeps_exactly_the_unsent_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _fill(spool, 4)
    for event in spool.pending()[:2]:
        spool.mark_sent(event)
    again = Spool(tmp_path)
    assert [(e.event_id, e.payload) for e in again.pending()] == [
        ("id-2", b'{"n":2}'),
        ("id-3", b'{"n":3}'),
    ]
    assert (tmp_path / SENT).read_bytes() == b""  # compacted on open


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path: Path) -> None:
    _fill(Spool(tmp_path), 2)
    with (tmp_path / EVENTS).open("ab") as handle:
        handle.write(b'{"seq":3,"id":"id-torn","topic":"t/x","payl')  # the process died here
    spool = Spool(tmp_path)
    assert [e.event_id for e in spool.pending()] == ["id-0", "id-1"]
    spool.append("id-2", "t/2", b"{}")  # appends after the cut, not glued onto the torn bytes
    assert [e.event_id for e in Spool(tmp_path).pending()] == ["id-0", "id-1", "id-2"]


def test_a_torn_sent_mark_means_the_event_is_sent_again_not_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _fill(spool, 1)
    (tmp_path / SENT).write_bytes(b'{"se')
    assert [e.event_id for e in Spool(tmp_path).pending()] == ["id-0"]


def test_stale_sent_marks_never_hide_new_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _fill(spool, 2)
    for event in spool.pending():
        spool.mark_sent(event)
    # A crash after the events journal was compacted but before the sent journal was: stale marks.
    (tmp_path / SENT).write_bytes(b'{"seq":1}\n{"seq":2}\n')
    reopened = Spool(tmp_path)
    reopened.append("new", "t/new", b"{}")
    assert [e.event_id for e in Spool(tmp_path).pending()] == ["new"]


def test_the_spool_is_bounded_with_a_clear_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=2)
    _fill(spool, 2)
    with pytest.raises(
        SpoolFull, match=r"spool .* is full \(2 events.*mqtt_url.*nothing spooled so far is lost"
    ):
        spool.append("id-x", "t/x", b"{}")
    assert len(Spool(tmp_path, max_events=2)) == 2


def test_the_byte_bound_counts_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append("a", "t", b"x" * 100)
    with pytest.raises(SpoolFull):
        spool.append("b", "t", b"x" * 100)


# -- held events: kept after the PUBACK until the pipeline acknowledges them (#11 defect 4) --------------


def test_a_held_event_outlives_the_puback_and_goes_at_the_pipelines_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    held = spool.append("flash-1", "t/flashed", b'{"f":1}', hold=True)
    spool.append("scan-2", "t/scanned", b'{"s":2}')
    spool.mark_sent(held, now=100.0)

    assert spool.is_pending("flash-1") and [e.event_id for e in spool.held()] == ["flash-1"]
    assert [e.event_id for e in spool.pending()] == ["scan-2"]
    assert spool.due_again(now=120.0, interval=30.0) == []
    [due] = spool.due_again(now=130.0, interval=30.0)
    assert (due.event_id, due.payload) == ("flash-1", b'{"f":1}')  # the same bytes, the same id
    spool.sent_again(due, now=130.0)
    assert spool.due_again(now=150.0, interval=30.0) == []

    assert spool.acknowledge("flash-1") and not spool.is_pending("flash-1")
    assert spool.held() == [] and not spool.acknowledge("flash-1")  # a duplicate ack is harmless
    assert not spool.acknowledge("scan-2")  # only held events take the pipeline's acknowledgement


def test_a_held_event_survives_a_restart_and_is_due_at_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    held = spool.append("flash-1", "t/flashed", b"{}", hold=True)
    spool.mark_sent(held, now=1000.0)  # compacts: nothing pending, the held event must stay

    again = Spool(tmp_path)
    assert again.pending() == [] and [e.event_id for e in again.held()] == ["flash-1"]
    assert [e.event_id for e in again.due_again(now=0.0, interval=30.0)] == ["flash-1"]
    assert again.acknowledge("flash-1")
    assert Spool(tmp_path).held() == [] and Spool(tmp_path).pending() == []


def test_an_ack_before_the_puback_is_noted_settles_the_event(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    held = spool.append("flash-1", "t/flashed", b"{}", hold=True)
    assert spool.acknowledge("flash-1")  # the pipeline was faster than the PUBACK bookkeeping
    spool.mark_sent(held, now=1.0)
    assert spool.pending() == [] and spool.held() == []
    fresh = spool.append("next", "t/x", b"{}")
    assert fresh.seq > held.seq and [e.event_id for e in Spool(tmp_path).pending()] == ["next"]
