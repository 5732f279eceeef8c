"""The un-acked backlog of a worker: counted, aged, and warned about with what to check."""

from __future__ import annotations

import threading

from pipeline.bus.acks import Backlog, UnackedWatch, backlog_warning


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backlog_counts_unacked_messages_and_the_age_of_the_oldest() -> None:
    clock = FakeClock()
    watch = UnackedWatch(clock)
    first = watch.received()
    clock.now += 30
    second = watch.received()
    clock.now += 10
    assert watch.backlog() == Backlog(2, 40.0)
    watch.acked(first)
    assert watch.backlog() == Backlog(1, 10.0)
    watch.acked(second)
    watch.acked(second)  # a second ack of the same message changes nothing
    assert watch.backlog() == Backlog(0, 0.0)


def test_clear_forgets_everything_after_a_disconnect() -> None:
    watch = UnackedWatch(FakeClock())
    watch.received()
    watch.clear()
    assert watch.backlog().count == 0


def test_no_warning_under_the_thresholds_or_when_they_are_off() -> None:
    assert backlog_warning(Backlog(5, 10.0), "w", max_count=10, max_seconds=60) is None
    assert backlog_warning(Backlog(500, 5000.0), "w", max_count=0, max_seconds=0) is None
    assert backlog_warning(Backlog(0, 0.0), "w", max_count=0, max_seconds=60) is None


def test_warning_by_age_or_count_names_the_client_and_what_to_check() -> None:
    by_age = backlog_warning(Backlog(3, 75.0), "edgeline-worker-h-1", max_count=0, max_seconds=60)
    by_count = backlog_warning(Backlog(100, 1.0), "edgeline-worker-h-1", max_count=100, max_seconds=60)
    for warning in (by_age, by_count):
        assert warning is not None and "\n" not in warning
        assert "edgeline-worker-h-1" in warning and "edgeline doctor" in warning
        assert "mqtt_unacked_warn_seconds" in warning
    assert by_age is not None and "3 received message(s)" in by_age and "75 s" in by_age


def test_the_watch_thread_warns_while_a_message_stays_unacked() -> None:
    warned = threading.Event()
    lines: list[str] = []
    clock = FakeClock()
    watch = UnackedWatch(clock)
    watch.received()
    clock.now += 120

    def warn(line: str) -> None:
        lines.append(line)
        warned.set()

    watch.start_warnings("w1", 0, 60.0, warn)
    try:
        assert warned.wait(15), "no warning for a message un-acked for 120 s"
    finally:
        watch.stop_warnings()
    assert "w1 holds 1 received message(s) unacknowledged" in lines[0]
