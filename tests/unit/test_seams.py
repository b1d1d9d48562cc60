"""The public test seams: ``statistics()``, ``set_retry_policy()``, and the hedging race alone."""

from __future__ import annotations

import dataclasses

import anyio
import httpx
import pytest
import respx

from rerank_async import ClientStatistics, Limits, RetryPolicy, ServerError
from rerank_async._flow.limiter import FairLimiter
from rerank_async._hedging import race_hedged
from tests.conftest import URL, SleepRecorder, make_client


async def test_statistics_of_an_idle_client() -> None:
    async with make_client(batch_size=5, max_concurrency=3) as client:
        stats = client.statistics()
    assert stats == ClientStatistics(
        in_flight=0, waiting=0, outstanding_batches=0, batch_limit=5, max_concurrency=3,
        concurrency_limit=3, retry_budget_left=23.0,  # 10 s of 2/s, and one per slot
        paused_until=None, requests_this_minute=None, tokens_this_minute=None,
    )  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.in_flight = 1  # type: ignore[misc]


async def test_statistics_while_batches_wait_for_slots(mock_api: respx.MockRouter) -> None:
    release = anyio.Event()
    arrived = 0
    both_in = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_in.set()
        await release.wait()
        return httpx.Response(200, json={"scores": [0.5] * 2})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(
        batch_size=2, max_concurrency=2, limits=Limits(min_batch_size=2)
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.score, "q", [f"d{i}" for i in range(8)])
            with anyio.fail_after(5):
                await both_in.wait()
            stats = client.statistics()
            release.set()
        assert client.statistics().outstanding_batches == 0
    assert stats.in_flight == 2
    assert stats.waiting == 2
    assert stats.outstanding_batches == 4


async def test_set_retry_policy_changes_sleep_and_limits(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(503))
    sleep = SleepRecorder()
    async with make_client(max_retries=2) as client:
        client.set_retry_policy(RetryPolicy(initial_delay=1.0, sleep=sleep, uniform=lambda a, b: b))
        assert client.options.retry.initial_delay == 1.0
        with pytest.raises(ServerError):
            await client.score("q", ["a"])
    assert route.call_count == 3
    assert sleep.delays == [1.0, 2.0]


def test_set_retry_policy_checks_its_argument() -> None:
    client = make_client()
    with pytest.raises(TypeError, match="RetryPolicy"):
        client.set_retry_policy("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"retry\.initial_delay"):
        client.set_retry_policy(RetryPolicy(initial_delay=-1))


async def test_race_hedged_copy_wins_and_gives_its_slot_back() -> None:
    limiter = FairLimiter(2)
    first_started = anyio.Event()
    calls = 0
    hedges = 0

    async def send() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_started.set()
            await anyio.sleep_forever()
        return "copy"

    def on_hedge() -> None:
        nonlocal hedges
        hedges += 1

    with anyio.fail_after(5):
        answer = await race_hedged(send, hedge_after=0.001, limiter=limiter, on_hedge=on_hedge)
    assert answer == "copy"
    assert (calls, hedges, limiter.in_use) == (2, 1, 0)


class WatchedLimiter(FairLimiter):
    """Sets ``asked`` when the race looks for a slot for its copy."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.asked = anyio.Event()

    def try_acquire(self) -> bool:
        self.asked.set()
        return super().try_acquire()


async def test_race_hedged_without_a_free_slot_waits_for_the_first() -> None:
    limiter = WatchedLimiter(1)
    assert limiter.try_acquire()  # the caller's own slot: none is left for a copy
    limiter.asked = anyio.Event()
    calls = 0

    async def send() -> str:
        nonlocal calls
        calls += 1
        await limiter.asked.wait()  # answer only after the race looked for a slot
        return "first"

    with anyio.fail_after(5):
        assert await race_hedged(send, hedge_after=0.001, limiter=limiter) == "first"
    assert calls == 1
    assert limiter.in_use == 1  # only the caller's slot, never a copy's
    limiter.release()


async def test_race_hedged_raises_the_first_error_when_both_fail() -> None:
    limiter = FairLimiter(2)
    copy_failed = anyio.Event()
    calls = 0

    async def send() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await copy_failed.wait()
            raise ValueError("second to fail")
        copy_failed.set()
        raise KeyError("first to fail")

    with anyio.fail_after(5), pytest.raises(KeyError, match="first to fail"):
        await race_hedged(send, hedge_after=0.001, limiter=limiter)
    assert calls == 2
    assert limiter.in_use == 0
