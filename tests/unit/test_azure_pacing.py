"""Token bucket, backoff and Retry-After parsing: pure, on a fake clock."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.azure.pacing import Backoff, TokenBucket, parse_retry_after


class FakeClock:
    """A monotonic clock that only moves when the test (or a sleep) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, burst=3, clock=clock, sleep=clock.sleep)  # 10 per second
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    assert clock.now == pytest.approx(1000.3)


def test_bucket_refills_while_idle_but_not_beyond_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, burst=2, clock=clock, sleep=clock.sleep)  # 1 per second
    bucket.acquire()
    bucket.acquire()
    clock.now += 3600
    assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(1.0)


def test_reserve_queues_concurrent_callers_one_slot_apart() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, burst=1, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 1.0, 2.0, 3.0])


@given(st.integers(min_value=1, max_value=400))
def test_bucket_never_exceeds_the_rate_over_a_minute(n: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(900, burst=10, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(n):
        bucket.acquire()
    elapsed = clock.now - start
    assert n <= 10 + elapsed * 900 / 60 + 1e-6


@pytest.mark.parametrize("bad", [0, -5])
def test_bucket_rejects_non_positive_rates(bad: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(bad)


def test_backoff_ceiling_doubles_and_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    top = [backoff.delay(n, rng=lambda lo, hi: hi) for n in range(6)]
    assert top == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(3, rng=lambda lo, hi: lo) == 0.0


@given(st.integers(min_value=0, max_value=10_000))
def test_backoff_full_jitter_stays_within_zero_and_cap(n: int) -> None:
    delay = Backoff(base=0.5, cap=30.0).delay(n)
    assert 0.0 <= delay <= 30.0


def test_retry_after_replaces_jitter_and_is_bounded() -> None:
    backoff = Backoff(max_retry_after=60.0)
    assert backoff.delay(0, retry_after=3.0) == 3.0
    assert backoff.delay(5, retry_after=1e9) == 60.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("", None),
        (None, None),
        ("soon", None),
        ("-4", 0.0),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
