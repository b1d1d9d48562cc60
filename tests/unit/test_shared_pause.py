"""SharedPause on a fake clock: dense 429s pause everyone, isolated ones do not."""

from __future__ import annotations

import random

import anyio
import pytest

from rerank_async._flow.shared_pause import SharedPause
from tests.unit.fake_clock import FakeClock


def pause(clock: FakeClock, **kwargs: float) -> SharedPause:
    return SharedPause(clock=clock, sleep=clock.sleep, **kwargs)


async def test_not_paused_means_no_wait() -> None:
    clock = FakeClock()
    shared = pause(clock)
    assert shared.until is None
    await shared.wait()
    assert clock.sleeps == []


async def test_isolated_429s_among_answers_pause_nobody() -> None:
    clock = FakeClock()
    shared = pause(clock)
    for index in range(200):
        if index % 20 == 0:  # 5% of answers
            assert not shared.on_rate_limited(1.0)
        else:
            shared.on_answer()
    assert shared.until is None
    assert shared.pauses == 0


async def test_dense_429s_with_retry_after_pause_everyone() -> None:
    clock = FakeClock()
    shared = pause(clock)
    for _ in range(24):
        shared.on_answer()
    results = [shared.on_rate_limited(2.0) for _ in range(8)]
    assert results == [False] * 7 + [True]  # the eighth makes them 8 of 32 (25%)
    assert shared.until == pytest.approx(clock.now + 2.0)
    await shared.wait()
    assert sum(clock.sleeps) == pytest.approx(2.0)
    assert shared.until is None


async def test_a_fresh_clients_first_fast_refusals_pause_nobody() -> None:
    # A 429 comes back before any 50 ms answer: two of a first burst of eight, at 5%
    # random 429s, are the first answers in about one run in twenty.
    shared = pause(FakeClock())
    assert not shared.on_rate_limited(1.0)
    assert not shared.on_rate_limited(1.0)
    assert shared.until is None


@pytest.mark.parametrize("seed", range(20))
async def test_random_429s_at_five_percent_never_pause(seed: int) -> None:
    rng = random.Random(seed)
    shared = pause(FakeClock())
    for _ in range(400):
        if rng.random() < 0.05:
            assert not shared.on_rate_limited(1.0)
        else:
            shared.on_answer()
    assert shared.pauses == 0


async def test_a_client_over_its_limit_pauses_within_its_first_refusals() -> None:
    # Over a rate limit, most answers are refusals: the eighth pauses everyone, however
    # few answers came before.
    shared = pause(FakeClock())
    for _ in range(4):
        shared.on_answer()
    results = [shared.on_rate_limited(1.0) for _ in range(8)]
    assert results == [False] * 7 + [True]


async def test_dense_429s_without_retry_after_do_not_pause() -> None:
    clock = FakeClock()
    shared = pause(clock)
    assert not any(shared.on_rate_limited(None) for _ in range(16))
    assert shared.until is None


async def test_pause_is_capped_and_only_extends() -> None:
    clock = FakeClock()
    shared = pause(clock, max_pause=5.0)
    shared.pause_for(60.0)
    assert shared.until == pytest.approx(clock.now + 5.0)
    shared.pause_for(1.0)  # shorter: no change
    assert shared.until == pytest.approx(clock.now + 5.0)
    assert shared.pauses == 1


async def test_waiters_follow_an_extension() -> None:
    clock = FakeClock()
    shared = pause(clock)
    shared.pause_for(1.0)
    woke: list[float] = []

    async def waiter() -> None:
        await shared.wait()
        woke.append(clock.now)

    start = clock.now
    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.lowlevel.checkpoint()
        assert shared.waiting == 1
        shared.pause_for(3.0)  # extended while the waiter sleeps
    assert woke[0] >= start + 3.0
    assert shared.waiting == 0


def test_overload_at_the_floor_pauses_longer_each_time_until_an_answer() -> None:
    clock = FakeClock()
    shared = pause(clock)
    delays = [shared.on_overload_at_floor() for _ in range(8)]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4]
    assert delays[-1] == 2.0
    shared.on_answer()
    assert shared.on_overload_at_floor() == 0.05


async def test_a_sleep_that_moves_no_clock_still_ends_the_pause() -> None:
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)
        await anyio.lowlevel.checkpoint()

    shared = SharedPause(clock=lambda: 10.0, sleep=record)
    shared.pause_for(2.0)
    with anyio.fail_after(5):
        await shared.wait()
    assert delays == [2.0]
