"""The pure rules of `edgeline doctor`: what the broker's $SYS says, how much clock skew is too much."""

from __future__ import annotations

from pipeline.doctor.checks import MAX_SKEW_SECONDS, queue_limit_problem, skew_problem

VERSION = {"$SYS/broker/version": b"mosquitto version 2.0.11"}


def test_a_mosquitto_that_dropped_nothing_is_fine() -> None:
    assert queue_limit_problem(VERSION) is None
    assert queue_limit_problem({**VERSION, "$SYS/broker/publish/messages/dropped": b"0"}) is None


def test_dropped_messages_are_a_problem_naming_the_setting() -> None:
    problem = queue_limit_problem({**VERSION, "$SYS/broker/publish/messages/dropped": b"7516"})
    assert problem is not None and not problem.warning
    assert "dropped 7516 message(s)" in problem.text and "max_queued_messages 0" in problem.text


def test_unreadable_sys_topics_are_only_a_warning() -> None:
    problem = queue_limit_problem({})
    assert problem is not None and problem.warning and "$SYS" in problem.text


def test_skew_within_the_limit_passes_either_way() -> None:
    assert skew_problem(MAX_SKEW_SECONDS, "https://dps") is None
    assert skew_problem(-MAX_SKEW_SECONDS, "https://dps") is None


def test_skew_beyond_the_limit_says_which_way_and_what_to_do() -> None:
    ahead, behind = skew_problem(300.0, "https://dps"), skew_problem(-90.4, "https://dps")
    assert ahead is not None and "300 s ahead of DPS at https://dps" in ahead.text
    assert behind is not None and "90 s behind DPS" in behind.text and "NTP" in behind.text
