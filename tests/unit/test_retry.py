"""Retry rules: what is retryable, Retry-After parsing, backoff, and the retry loop."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import anyio
import httpx
import pytest

from rerank_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
    RetryPolicy,
)
from rerank_async._retry import (
    NoSignals,
    RetryDecision,
    backoff_delay,
    call_with_retries,
    is_retryable,
    parse_retry_after,
)
from tests.conftest import SleepRecorder

NOW = 1_700_000_000.0


def status_error(code: int, retry_after: float | None = None) -> APIStatusError:
    return APIStatusError(f"HTTP {code}", status_code=code, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        *[(status_error(code), True) for code in (408, 409, 425, 429, 500, 502, 503, 504, 529)],
        *[(status_error(code), False) for code in (400, 401, 403, 404, 413, 422, 501, 505)],
        (APIConnectionError("refused"), True),
        (APITimeoutError("slow"), True),
        (ResponseValidationError("truncated body"), True),
        (ValueError("a bug"), False),
    ],
)
def test_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "0.25"}, 0.25),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # ms is more precise
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        (
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)},
            30.0,
        ),
        (
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)},
            0.0,
        ),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00"}, None),  # no zone: not an RFC 9110 date
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), now=NOW) == expected


def upper_bound(low: float, high: float) -> float:
    return high


@pytest.mark.parametrize(
    ("attempt", "expected_ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (10_000, 8.0)],
)
def test_backoff_ceiling_doubles_and_caps(attempt: int, expected_ceiling: float) -> None:
    delay = backoff_delay(attempt, initial_delay=0.5, max_delay=8.0, uniform=upper_bound)
    assert delay == expected_ceiling


def test_backoff_is_jittered_below_the_ceiling() -> None:
    draws = {backoff_delay(3, initial_delay=0.5, max_delay=8.0) for _ in range(200)}
    assert all(0.0 <= d <= 2.0 for d in draws)
    assert len(draws) > 100  # full jitter, not a fixed wait


def test_backoff_zero_initial_never_sleeps() -> None:
    assert backoff_delay(50, initial_delay=0.0, max_delay=8.0) == 0.0


def test_huge_attempt_does_not_overflow() -> None:
    # 2.0 ** 10**18 would raise OverflowError; the exponent is clamped first.
    assert backoff_delay(10**18, initial_delay=1.0, max_delay=8.0, uniform=upper_bound) == 8.0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(2.0, 2.0), (0.0, 0.0), (600.0, 60.0)],  # honoured, capped at max_retry_after
)
def test_retry_after_wins_over_backoff(retry_after: float, expected: float) -> None:
    decide = RetryDecision(
        RetryPolicy(initial_delay=100.0, max_retry_after=60.0), 3, Paused(until=0.0), clock=zero
    )
    verdict = decide(status_error(429, retry_after), 1)
    assert verdict.retry
    assert verdict.delay == expected


class Paused:
    """Flow control that says the whole client is paused until ``until``; no budget."""

    def __init__(self, until: float) -> None:
        self.paused_until: float | None = until
        self.in_outage = False

    def take_retry(self) -> bool:
        return True


def zero() -> float:
    return 0.0


def decision(max_retries: int, **policy: object) -> RetryDecision:
    return RetryDecision(RetryPolicy(**policy), max_retries, NoSignals())  # type: ignore[arg-type]


async def test_retries_until_success_and_reports_each_retry() -> None:
    outcomes: list[Exception | None] = [status_error(503), APIConnectionError("reset"), None]
    events = []
    sleep = SleepRecorder()

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    decide = decision(3, initial_delay=0.0)
    assert await call_with_retries(attempt, decide, sleep=sleep, on_retry=events.append) == "ok"
    assert [event.attempt for event in events] == [1, 2]
    assert sleep.delays == [0.0, 0.0]


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise status_error(503)

    decide = decision(0, initial_delay=0.0)  # 0 disables retrying
    with pytest.raises(APIStatusError) as caught:
        await call_with_retries(attempt, decide)
    assert calls == 1
    assert caught.value.status_code == 503


async def test_max_retries_bounds_attempts() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise status_error(503)

    with pytest.raises(APIStatusError):
        await call_with_retries(attempt, decision(3, initial_delay=0.0))
    assert calls == 4


async def test_non_retryable_error_is_raised_at_once() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise status_error(401)

    with pytest.raises(APIStatusError):
        await call_with_retries(attempt, decision(5, initial_delay=0.0))
    assert calls == 1


async def test_no_retry_starts_past_the_deadline() -> None:
    sleep = SleepRecorder()
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise status_error(429, retry_after=30.0)

    now = anyio.current_time()
    decide = RetryDecision(RetryPolicy(), 5, Paused(until=now), deadline=now + 10.0)
    with pytest.raises(APIStatusError):
        await call_with_retries(attempt, decide, sleep=sleep)
    assert calls == 1  # a 30 s wait cannot fit in a 10 s budget
    assert sleep.delays == []


class Budget:
    """Flow control with ``left`` retries in its budget and no pause (or ``paused_until``)."""

    in_outage = False

    def __init__(self, left: int, paused_until: float | None = None) -> None:
        self.left = left
        self.paused_until = paused_until

    def take_retry(self) -> bool:
        if self.left == 0:
            return False
        self.left -= 1
        return True


@pytest.mark.parametrize(
    ("error", "attempt", "retried"),
    [
        (status_error(503), 1, True),
        (status_error(503), 3, True),
        (status_error(503), 4, False),  # max_retries=3: the fourth failure is final
        (status_error(400), 1, False),  # never retryable
        (APIConnectionError("reset"), 1, True),
    ],
)
def test_the_verdict_counts_attempts_and_retryability(
    error: Exception, attempt: int, retried: bool
) -> None:
    decide = RetryDecision(RetryPolicy(initial_delay=0.0), 3, Budget(10), clock=zero)
    verdict = decide(error, attempt)
    assert verdict.retry is retried
    assert verdict.error is error


def test_a_spent_budget_turns_the_verdict_into_a_budget_error() -> None:
    budget = Budget(1)
    decide = RetryDecision(RetryPolicy(initial_delay=0.0), 5, budget, clock=zero)
    assert decide(status_error(503), 1).retry
    verdict = decide(status_error(503), 2)
    assert not verdict.retry
    assert isinstance(verdict.error, RetryBudgetExhaustedError)
    assert budget.left == 0


def test_the_deadline_is_checked_before_the_budget_is_drawn() -> None:
    budget = Budget(5)
    decide = RetryDecision(
        RetryPolicy(initial_delay=10.0, max_delay=10.0, uniform=lambda a, b: b),
        5, budget, deadline=5.0, clock=zero,
    )  # fmt: skip
    verdict = decide(status_error(503), 1)
    assert not verdict.retry  # a 10 s wait cannot fit before the deadline at 5 s
    assert budget.left == 5  # and it cost nothing


def test_a_client_pause_is_waited_out_once_in_the_backoff() -> None:
    signals = Budget(10, paused_until=2.0)
    decide = RetryDecision(
        RetryPolicy(initial_delay=0.1, uniform=lambda a, b: b), 5, signals, clock=zero
    )
    assert decide(status_error(503), 1).delay == 2.0  # the pause, not the 0.1 s backoff
    assert decide.waited_until == 2.0
    assert decide(status_error(503), 2).delay == pytest.approx(0.2)  # already waited out
    signals.paused_until = 3.0  # extended: waited out again, to its new end
    assert decide(status_error(503), 3).delay == 3.0


class Outage:
    """Flow control that is waiting out an outage; no pause, no budget."""

    paused_until: float | None = None
    in_outage = True

    def take_retry(self) -> bool:
        return True


def test_attempts_failed_during_an_outage_are_retried_at_the_gate_and_not_counted() -> None:
    decide = RetryDecision(RetryPolicy(), 2, Outage(), clock=zero)
    for attempt in range(1, 50):
        verdict = decide(status_error(503), attempt)
        assert (verdict.retry, verdict.delay, verdict.reason) == (True, 0.0, "outage")
    Outage.in_outage = False
    try:
        # Over: the attempts before it still count, not the 49 during it.
        assert decide(status_error(503), 50).retry
        assert decide(status_error(503), 51).retry
        assert decide(status_error(503), 52).reason == "attempts"
    finally:
        Outage.in_outage = True


@pytest.mark.parametrize(
    ("error", "max_retries", "deadline", "reason"),
    [
        (status_error(400), 2, 10.0, "final"),  # never retryable
        (status_error(429), 0, 10.0, "attempts"),  # a rate limit is not an outage
        (status_error(503), 0, 10.0, "attempts"),  # max_retries=0: no retries at all
        (status_error(503), 2, 0.0, "deadline"),  # the call's deadline still holds
    ],
)
def test_what_an_outage_does_not_forgive(
    error: Exception, max_retries: int, deadline: float, reason: str
) -> None:
    decide = RetryDecision(RetryPolicy(), max_retries, Outage(), deadline=deadline, clock=zero)
    verdict = decide(error, 1)
    assert not verdict.retry
    assert verdict.reason == reason
