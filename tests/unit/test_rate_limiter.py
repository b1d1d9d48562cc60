"""RateLimiter on a fake clock: steady rate, burst, cost weighting, debt, correction, FIFO."""

from __future__ import annotations

import anyio
import pytest

from rerank_async._flow.rate_limiter import RateLimiter
from tests.unit.fake_clock import FakeClock


def limiter(per_minute: float, clock: FakeClock, **kwargs: float) -> RateLimiter:
    return RateLimiter(per_minute, clock=clock, sleep=clock.sleep, **kwargs)


@pytest.mark.parametrize(
    ("per_minute", "burst", "message"),
    [(0, None, "per_minute"), (-5, None, "per_minute"), (float("inf"), None, "per_minute"),
     (60, 0, "burst"), (60, float("nan"), "burst")],
)  # fmt: skip
def test_rejects_bad_rates(per_minute: float, burst: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(per_minute, burst=burst)


async def test_a_burst_then_the_steady_rate() -> None:
    clock = FakeClock()
    bucket = limiter(1200, clock, burst=20)  # 20 per second, a burst of 20
    start = clock.now
    for _ in range(20):
        await bucket.acquire()
    assert clock.now == start  # the burst needs no wait
    for _ in range(40):
        await bucket.acquire()
    assert clock.now - start == pytest.approx(2.0)  # then 20 per second exactly


async def test_the_default_burst_is_a_tenth_of_a_second_so_requests_are_paced() -> None:
    clock = FakeClock()
    bucket = limiter(1200, clock)  # 20 per second: a burst of 2
    start = clock.now
    for _ in range(22):
        await bucket.acquire()
    assert clock.now - start == pytest.approx(1.0)
    assert limiter(60, clock).available() == 1.0  # never below one request


async def test_costs_are_weighted() -> None:
    clock = FakeClock()
    bucket = limiter(6000, clock, burst=100)  # 100 tokens per second, burst 100
    await bucket.acquire(100)
    await bucket.acquire(50)
    assert clock.now - 1000.0 == pytest.approx(0.5)
    assert bucket.used_this_minute() == 150


async def test_a_cost_over_the_burst_waits_for_a_full_bucket_and_leaves_debt() -> None:
    clock = FakeClock()
    bucket = limiter(600, clock, burst=10)  # 10 per second, burst 10
    await bucket.acquire(10)
    await bucket.acquire(30)  # waits for a full bucket (1 s), then owes 20
    assert clock.now - 1000.0 == pytest.approx(1.0)
    assert bucket.available() == pytest.approx(-20.0)
    await bucket.acquire(1)  # the debt is paid first: 2.1 s more
    assert clock.now - 1000.0 == pytest.approx(3.1)


async def test_correction_from_reported_usage() -> None:
    clock = FakeClock()
    bucket = limiter(600, clock, burst=10)
    await bucket.acquire(5)
    bucket.correct(estimated=5, actual=12)  # the server counted more
    assert bucket.available() == pytest.approx(-2.0)
    assert bucket.used_this_minute() == 12
    bucket.correct(estimated=12, actual=0)  # refund, but never above a full bucket
    assert bucket.available() == pytest.approx(10.0)


async def test_used_this_minute_resets_after_a_minute() -> None:
    clock = FakeClock()
    bucket = limiter(60, clock)
    assert bucket.used_this_minute() == 0
    await bucket.acquire()
    assert bucket.used_this_minute() == 1
    clock.advance(61)
    assert bucket.used_this_minute() == 0
    await bucket.acquire()
    assert bucket.used_this_minute() == 1


async def test_waiters_are_served_in_arrival_order_and_counted() -> None:
    clock = FakeClock()
    bucket = limiter(60, clock)  # 1 per second, burst 1
    order: list[int] = []
    seen_waiting: list[int] = []

    async def take(index: int) -> None:
        await bucket.acquire()
        order.append(index)
        seen_waiting.append(bucket.waiting)

    async with anyio.create_task_group() as group:
        for index in range(5):
            group.start_soon(take, index)
    assert order == [0, 1, 2, 3, 4]
    assert clock.now - 1000.0 == pytest.approx(4.0)
    assert max(seen_waiting) >= 1
    assert bucket.waiting == 0


async def test_cancelled_waiter_takes_nothing() -> None:
    clock = FakeClock()
    bucket = RateLimiter(60, clock=clock)  # real sleep: the cancel lands while it waits
    await bucket.acquire()
    with anyio.move_on_after(0.01):
        await bucket.acquire()
    assert bucket.available() == pytest.approx(0.0)
    assert bucket.used_this_minute() == 1


async def test_negative_cost_is_rejected() -> None:
    with pytest.raises(ValueError, match="cost"):
        await RateLimiter(60).acquire(-1)


async def test_a_sleep_that_moves_no_clock_still_ends_the_wait() -> None:
    """A test's recording sleep (no clock) must not make acquire spin."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)
        await anyio.lowlevel.checkpoint()

    bucket = RateLimiter(60, clock=lambda: 5.0, sleep=record)
    await bucket.acquire()
    with anyio.fail_after(5):
        await bucket.acquire()
    assert delays == [pytest.approx(1.0)]
