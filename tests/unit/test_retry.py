"""base.retry: the one back-off schedule and retry loop every layer uses."""

from __future__ import annotations

import random

import pytest

from base.retry import Backoff, retrying


def test_the_back_off_doubles_from_its_first_delay_up_to_its_cap():
    backoff = Backoff(first_s=0.1, cap_s=1.0)
    assert [backoff.delay(n) for n in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay(10_000) == 1.0  # no overflow however long a loop runs


def test_full_jitter_stays_under_the_ceiling_and_spreads_the_delays():
    backoff, rng = Backoff(first_s=1.0, cap_s=8.0, jitter=1.0), random.Random(3)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays) and len(set(delays)) > 100


@pytest.mark.parametrize(
    "bad", [dict(first_s=2, cap_s=1), dict(first_s=1, cap_s=2, factor=0.5), dict(first_s=1, cap_s=2, jitter=2)]
)
def test_an_impossible_back_off_is_refused(bad):
    with pytest.raises(ValueError, match="invalid back-off"):
        Backoff(**bad)


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = TimeoutError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"try {self.calls}")
        return "done"


def test_it_retries_what_it_is_told_to_and_sleeps_the_schedule():
    call, slept, told = Flaky(3), [], []
    result = retrying(
        call,
        retry_on=lambda e: isinstance(e, TimeoutError),
        backoff=Backoff(0.1, 1.0),
        sleep=slept.append,
        on_retry=lambda n, e, d: told.append((n, str(e), d)),
    )
    assert result == "done" and call.calls == 4
    assert slept == [0.1, 0.2, 0.4]
    assert told == [(1, "try 1", 0.1), (2, "try 2", 0.2), (3, "try 3", 0.4)]


def test_it_raises_at_once_what_it_is_not_told_to_retry():
    call = Flaky(1, KeyError)
    with pytest.raises(KeyError):
        retrying(call, retry_on=lambda e: isinstance(e, TimeoutError), backoff=Backoff(0.1, 1.0), sleep=lambda s: None)
    assert call.calls == 1


def test_it_gives_up_after_its_attempts_with_the_last_error():
    call = Flaky(10)
    with pytest.raises(TimeoutError, match="try 3"):
        retrying(call, retry_on=lambda e: True, backoff=Backoff(0.1, 1.0), attempts=3, sleep=lambda s: None)
    assert call.calls == 3


def test_it_gives_up_when_the_next_wait_would_end_past_its_deadline():
    now, call = [0.0], Flaky(10)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError):
        retrying(
            call, retry_on=lambda e: True, backoff=Backoff(1.0, 1.0), deadline_s=3.5, sleep=sleep, clock=lambda: now[0]
        )
    assert call.calls == 4 and now[0] == 3.0  # waits at 1, 2, 3 s; a fourth would end at 4 s
