"""Admission on a fake clock: slots follow the adaptive limit, buckets pace, the budget caps."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from rerank_async import APITimeoutError, BadRequestError, Limits, RateLimitError, ServerError
from rerank_async._exceptions import RetryBudgetExhaustedError
from rerank_async._flow.admission import Admission, LoadSettings, is_overload
from rerank_async._flow.limiter import FairLimiter
from rerank_async._options import RetryPolicy
from rerank_async._retry import RetryDecision, call_with_retries
from tests.conftest import FakeReranker, make_client
from tests.unit.fake_clock import FakeClock


def gate(clock: FakeClock, **settings: object) -> Admission:
    return Admission(
        LoadSettings(**settings),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )


def rate_limited(retry_after: float | None = None) -> RateLimitError:
    return RateLimitError("429", status_code=429, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "overload"),
    [(rate_limited(), True), (ServerError("x", status_code=503), True),
     (ServerError("x", status_code=500), False), (APITimeoutError("t"), True),
     (BadRequestError("x", status_code=400), False), (ValueError("x"), False)],
)  # fmt: skip
def test_is_overload(error: Exception, overload: bool) -> None:
    assert is_overload(error) is overload


async def test_capacity_429s_shrink_the_slots_and_successes_keep_them() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=16)
    assert admission.concurrency_limit == 16
    for _ in range(20):  # successes at level <= 8
        async with admission.admitted("call") as ticket:
            pass
        admission.answered(type(ticket)(level=8, epoch=ticket.epoch))
    async with admission.admitted("call") as ticket:
        pass
    await admission.failed(type(ticket)(level=9, epoch=ticket.epoch), rate_limited())
    assert admission.concurrency_limit == 8
    stats = admission.statistics()
    assert (stats.concurrency_limit, stats.in_flight, stats.waiting) == (8, 0, 0)
    assert stats.paused_until is None


async def test_fixed_bound_when_not_adaptive() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, adaptive=False)
    for _ in range(10):
        async with admission.admitted("call") as ticket:
            pass
        await admission.failed(ticket, ServerError("x", status_code=503))
    assert admission.concurrency_limit == 4


async def test_request_bucket_paces_sends_and_is_counted() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, max_requests_per_minute=600)  # 10/s, burst 1
    start = clock.now
    for _ in range(30):
        async with admission.admitted("call"):
            pass
    assert clock.now - start == pytest.approx(2.9)
    assert admission.statistics().requests_this_minute == 30
    assert admission.statistics().tokens_this_minute is None


async def test_token_bucket_weighs_by_estimate_and_corrects_from_usage() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, max_tokens_per_minute=6000)  # 100/s, burst 10
    assert admission.counts_tokens
    async with admission.admitted("call", tokens=100) as ticket:
        pass
    admission.answered(ticket, estimated_tokens=100, used_tokens=150)
    assert admission.statistics().tokens_this_minute == 150
    start = clock.now
    async with admission.admitted("call", tokens=10):
        pass
    assert clock.now - start == pytest.approx(1.5)  # 140 of debt, then a full burst of 10


async def test_dense_429s_with_retry_after_pause_every_new_request() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=8, adaptive=False)
    for _ in range(3):
        async with admission.admitted("call") as ticket:
            pass
        await admission.failed(ticket, rate_limited(2.0))
    assert admission.statistics().paused_until == pytest.approx(clock.now + 2.0)
    assert admission.paused_until is not None  # so their Retry-After binds
    start = clock.now
    async with admission.admitted("other call"):
        pass
    assert clock.now - start == pytest.approx(2.0)


async def test_an_isolated_429_does_not_bind_its_retry_after() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=8)
    for _ in range(20):
        async with admission.admitted("call") as ticket:
            pass
        admission.answered(ticket)
    async with admission.admitted("call") as ticket:
        pass
    await admission.failed(type(ticket)(level=8, epoch=ticket.epoch), rate_limited(1.0))
    assert admission.statistics().paused_until is None
    decide = RetryDecision(RetryPolicy(initial_delay=0.25), 4, admission, clock=clock)
    verdict = decide(rate_limited(1.0), 1)
    assert verdict.retry
    assert verdict.delay <= 0.25  # the normal backoff, not the 1 s Retry-After


async def test_a_429_to_the_only_request_in_flight_binds() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=8)
    for _ in range(20):
        async with admission.admitted("call") as ticket:
            pass
        admission.answered(ticket)
    async with admission.admitted("call") as ticket:
        assert ticket.level == 1
    await admission.failed(ticket, rate_limited(1.0))
    assert admission.statistics().paused_until == pytest.approx(clock.now + 1.0)
    decide = RetryDecision(RetryPolicy(initial_delay=0.0), 4, admission, clock=clock)
    assert decide(rate_limited(1.0), 1).delay == pytest.approx(1.0)


async def test_spent_rate_limit_headers_pause_the_client() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=8)
    async with admission.admitted("call") as ticket:
        pass
    admission.answered(ticket, limit_reset_s=1.5)  # the transport read the headers
    assert admission.statistics().paused_until == pytest.approx(clock.now + 1.5)


async def test_overload_at_the_floor_pauses_with_growing_waits() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=2)
    waits = []
    for _ in range(12):
        before = clock.now
        async with admission.admitted("call") as ticket:
            pass
        waits.append(clock.now - before)
        await admission.failed(ticket, ServerError("x", status_code=503))
    assert admission.concurrency_limit == 1
    assert waits[-1] > waits[-3] > 0


async def test_retry_budget_turns_a_retry_into_a_clear_error() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, retry_budget_ratio=0.0, retry_budget_floor=0.0)
    attempts = 0

    async def attempt() -> str:
        nonlocal attempts
        attempts += 1
        raise ServerError("boom", status_code=503, model="m", document_range=(0, 3))

    with pytest.raises(RetryBudgetExhaustedError, match="retry budget exhausted") as caught:
        await call_with_retries(
            attempt, RetryDecision(RetryPolicy(initial_delay=0), 10, admission, clock=clock)
        )
    assert attempts == 5  # the first, then the reserve: one retry per slot (4)
    assert isinstance(caught.value.__cause__, ServerError)
    assert caught.value.document_range == (0, 3)
    assert caught.value.last_error is caught.value.__cause__


async def test_retries_within_the_budget_go_ahead() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4)  # reserve of 20 from the floor
    answers = iter([ServerError("x", status_code=503), ServerError("x", status_code=503)])

    async def attempt() -> str:
        error = next(answers, None)
        if error is not None:
            raise error
        return "ok"

    assert (
        await call_with_retries(
            attempt, RetryDecision(RetryPolicy(initial_delay=0), 4, admission, clock=clock)
        )
        == "ok"
    )
    assert admission.statistics().retry_budget_left == pytest.approx(22.0)  # 20 + 4 - 2


async def test_hedge_slots_need_a_free_slot_and_budget() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=1, adaptive=False, retry_budget_floor=0.1)
    assert admission.try_admit_extra() is not None  # 1 from the floor, 1 reserve per slot
    assert admission.try_admit_extra() is None  # no free slot
    admission.release_extra()
    assert admission.try_admit_extra() is not None
    admission.release_extra()
    assert admission.try_admit_extra() is None  # no budget left


async def test_limiter_total_can_move_both_ways() -> None:
    limiter = FairLimiter(2)
    await limiter.acquire("a")
    await limiter.acquire("a")
    granted: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire(name)
        granted.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(take, "b")
        group.start_soon(take, "c")
        await anyio.wait_all_tasks_blocked()
        limiter.set_total(3)  # one more slot: handed to the first waiter at once
        await anyio.wait_all_tasks_blocked()
        assert granted == ["b"]
        limiter.set_total(1)  # now 3 held over a total of 1: releases are withheld
        limiter.release()
        limiter.release()
        await anyio.wait_all_tasks_blocked()
        assert granted == ["b"]
        assert limiter.in_use == 1
        limiter.release()  # back under the total: the waiter gets it
    assert granted == ["b", "c"]
    with pytest.raises(ValueError, match="total"):
        limiter.set_total(0)


async def test_a_fast_overload_answer_holds_its_slot_for_an_answers_time_while_overloaded() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, adaptive=True, retry_budget_ratio=None)

    async def request(seconds: float, error: Exception | None) -> float:
        """Seconds the slot is held after the answer came."""
        answered = clock.now
        with contextlib.suppress(ServerError):
            async with admission.admitted("call") as ticket:
                clock.advance(seconds)
                answered = clock.now
                if error is None:
                    admission.answered(ticket)
                else:
                    await admission.failed(ticket, error)
                    raise error
        return clock.now - answered

    assert await request(0.05, None) == 0  # one answer: 50 ms
    outage = ServerError("x", status_code=503)
    first = [await request(0.001, outage) for _ in range(3)]
    assert first == [0, 0, 0]  # not yet overloaded: released at once
    later = [await request(0.001, outage) for _ in range(8)]
    assert later[-1] == pytest.approx(0.049)  # held until an answer would have come


async def test_the_token_limit_counts_what_the_server_reported(fake: FakeReranker) -> None:
    """Costs are estimated before sending, then replaced by the reported usage."""
    async with make_client(
        batch_size=4, limits=Limits(min_batch_size=4, max_tokens_per_minute=60_000)
    ) as client:
        await client.score("query", [f"document {i}" for i in range(10)])
        stats = client.statistics()
    assert fake.calls == 3
    assert stats.tokens_this_minute == 3 * 10  # the fake reports 3 tokens per document
    assert stats.requests_this_minute is None


def test_a_429_that_paused_the_whole_client_is_retried_without_drawing_the_budget() -> None:
    clock = FakeClock()
    admission = gate(clock, max_concurrency=4, retry_budget_ratio=0.0, retry_budget_floor=0.0)
    decide = RetryDecision(RetryPolicy(initial_delay=0.0), 10, admission, clock=clock)
    left = admission.statistics().retry_budget_left
    paused = rate_limited(1.0)
    admission._pause.pause_for(1.0)  # as the dense 429s behind ``paused`` would have
    assert all(decide(paused, 1).retry for _ in range(50))
    assert admission.statistics().retry_budget_left == left
    # Not paused, or no Retry-After, or another failure: each retry costs one.
    assert decide(rate_limited(None), 1).retry
    assert decide(ServerError("x", status_code=503), 1).retry
    assert admission.statistics().retry_budget_left == left - 2
    clock.now += 2.0
    assert decide(paused, 1).retry
    assert admission.statistics().retry_budget_left == left - 3
