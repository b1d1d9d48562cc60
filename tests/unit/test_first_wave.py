"""A new client's first burst: paced above the free start, stopped by the first 429."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from rerank_async import RateLimitError, ServerError
from rerank_async._flow.admission import Admission, LoadSettings
from rerank_async._flow.first_wave import FirstWave
from tests.unit.fake_clock import FakeClock


def rate_limited() -> RateLimitError:
    return RateLimitError("429", status_code=429)


async def test_requests_above_the_free_start_go_one_spacing_apart() -> None:
    clock = FakeClock()
    wave = FirstWave(clock, clock.sleep, free=2, spacing=0.001)
    sent: list[tuple[int, float]] = []

    async def send(level: int) -> None:
        await wave.pace(level)
        sent.append((level, clock.now))

    async with anyio.create_task_group() as group:
        for level in range(1, 6):
            group.start_soon(send, level)
    started = clock.now - 0.002  # the two paced after the first one above the start
    assert [level for level, _ in sent] == [1, 2, 3, 4, 5]
    assert [round(at - started, 6) for _, at in sent[2:]] == [0.0, 0.001, 0.002]
    assert all(at == sent[0][1] for _, at in sent[:3])  # free ones and the first paced


async def test_after_a_hold_up_the_next_ones_still_go_spaced() -> None:
    clock = FakeClock()
    wave = FirstWave(clock, clock.sleep, free=1, spacing=0.001)
    await wave.pace(2)
    clock.advance(0.5)  # the loop was held up: nothing is overdue in a heap
    await wave.pace(3)
    await wave.pace(4)
    assert clock.sleeps == [pytest.approx(0.001)]


async def test_the_first_answer_ends_the_pacing() -> None:
    clock = FakeClock()
    wave = FirstWave(clock, clock.sleep, free=1, spacing=0.001)
    wave.end()
    for level in range(2, 10):
        await wave.pace(level)
    assert clock.sleeps == []


def test_only_a_first_429_above_the_free_start_tells_the_cap() -> None:
    clock = FakeClock()
    assert FirstWave(clock, clock.sleep, free=8).overloaded(12, rate_limited()) == 11
    assert FirstWave(clock, clock.sleep, free=8).overloaded(8, rate_limited()) is None
    outage = ServerError("down", status_code=503)
    assert FirstWave(clock, clock.sleep, free=8).overloaded(12, outage) is None
    wave = FirstWave(clock, clock.sleep, free=8)
    assert wave.overloaded(20, outage) is None
    assert wave.overloaded(12, rate_limited()) is None  # the wave ended at the first signal
    assert not wave.going


async def test_a_new_client_starts_at_the_ceiling_and_stops_below_its_first_429() -> None:
    clock = FakeClock()
    admission = Admission(LoadSettings(max_concurrency=32), clock=clock, sleep=clock.sleep)
    assert admission.concurrency_limit == 32
    async with admission.admitted("call") as ticket:
        await admission.failed(type(ticket)(level=12, epoch=ticket.epoch), rate_limited())
    assert admission.concurrency_limit == 11


async def test_a_fixed_bound_is_never_paced() -> None:
    clock = FakeClock()
    admission = Admission(
        LoadSettings(max_concurrency=32, adaptive=False), clock=clock, sleep=clock.sleep
    )
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(32):
            await stack.enter_async_context(admission.admitted("call"))
    assert clock.sleeps == []
