"""Inbox: topic matching, in-order dispatch on one worker thread, un-acked on failure, parking."""

from __future__ import annotations

import threading

import pytest

from pipeline.bus.inbox import Inbox, Subscription, topic_matches
from pipeline.bus.ports import InboundMessage


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("+/+/events/#", "x/y/events/unit.scanned", True),
        ("#", "$SYS/broker", False),
        ("a/b", "a/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


class Acks:
    def __init__(self) -> None:
        self.acked: list[str] = []

    def message(self, topic: str, payload: bytes = b"") -> InboundMessage:
        return InboundMessage(topic, payload, lambda: self.acked.append(topic))


def test_handlers_run_in_order_on_one_worker_thread() -> None:
    acks, seen, threads, done = Acks(), [], set(), threading.Event()

    def handler(message: InboundMessage) -> None:
        seen.append(message.topic)
        threads.add(threading.current_thread().name)
        message.ack()
        if len(seen) == 50:
            done.set()

    inbox = Inbox("t")
    inbox.add(Subscription("q/#", handler))
    for i in range(50):
        inbox.put(acks.message(f"q/{i}"))
    assert done.wait(5)
    inbox.close()
    assert seen == [f"q/{i}" for i in range(50)] == acks.acked
    assert threads == {"edgeline-bus-t"} and threading.current_thread().name not in threads


def test_a_failing_handler_leaves_the_message_unacked_and_the_worker_alive() -> None:
    acks, done = Acks(), threading.Event()

    def handler(message: InboundMessage) -> None:
        if message.topic == "q/bad":
            raise RuntimeError("database down")
        message.ack()
        done.set()

    inbox = Inbox("t")
    inbox.add(Subscription("q/#", handler))
    inbox.put(acks.message("q/bad"))
    inbox.put(acks.message("q/good"))
    assert done.wait(5)
    inbox.close()
    assert acks.acked == ["q/good"]


def test_messages_before_their_subscription_are_parked_then_delivered() -> None:
    acks, marker, got = Acks(), threading.Event(), threading.Event()
    inbox = Inbox("t")
    inbox.add(Subscription("marker", lambda m: marker.set()))
    inbox.put(acks.message("backlog/1"))  # a persistent session's backlog, before subscribe() ran
    inbox.put(acks.message("other/1"))
    inbox.put(acks.message("marker"))
    assert marker.wait(5)  # so both were dispatched already: and parked, un-acked
    assert acks.acked == []

    def handler(message: InboundMessage) -> None:
        message.ack()
        got.set()

    inbox.add(Subscription("backlog/#", handler))
    assert got.wait(5)
    inbox.close()
    assert acks.acked == ["backlog/1"]
