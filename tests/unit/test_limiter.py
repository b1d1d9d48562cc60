"""FairLimiter: the bound, round-robin service across owners, cancellation safety."""

from __future__ import annotations

import anyio
import pytest

from rerank_async._flow.limiter import FairLimiter


async def test_bound_is_never_exceeded() -> None:
    limiter = FairLimiter(3)
    peak = 0

    async def work(owner: int) -> None:
        nonlocal peak
        async with limiter.slot(owner):
            peak = max(peak, limiter.in_use)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for i in range(50):
            group.start_soon(work, i % 4)
    assert peak == 3
    assert limiter.in_use == 0
    assert limiter.waiting == 0


async def test_waiting_owners_are_served_round_robin() -> None:
    limiter = FairLimiter(1)
    order: list[str] = []
    gate = anyio.Event()

    async def work(name: str) -> None:
        async with limiter.slot(name[0]):
            order.append(name)
            if name == "hold":
                await gate.wait()
            else:
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(work, "hold")
        await anyio.wait_all_tasks_blocked()
        for name in ("big1", "big2", "big3", "small1"):  # a big call queued first
            group.start_soon(work, name)
            await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 4
        gate.set()
    # The small owner is served right after the big owner's first batch, not last.
    assert order == ["hold", "big1", "small1", "big2", "big3"]


async def test_cancelled_waiter_takes_nothing() -> None:
    limiter = FairLimiter(1)
    await limiter.acquire("a")
    with anyio.move_on_after(0.01):
        await limiter.acquire("b")
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.in_use == 0
    await limiter.acquire("c")  # the slot is free again
    assert limiter.in_use == 1


async def test_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    limiter = FairLimiter(1)
    await limiter.acquire("a")
    got_it: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire(name)
        got_it.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        limiter.release()  # hands the slot to "b" ...
        group.cancel_scope.cancel()  # ... which is cancelled as it wakes up
    # Whichever wins the race, no slot is stranded: held only if "b" really got it.
    assert limiter.in_use == len(got_it)
    assert limiter.waiting == 0


def test_total_must_be_positive() -> None:
    with pytest.raises(ValueError, match="total must be >= 1"):
        FairLimiter(0)


async def test_try_acquire_never_jumps_the_queue() -> None:
    limiter = FairLimiter(2)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # full
    limiter.release()
    async with anyio.create_task_group() as group:
        await limiter.acquire("a")  # takes the freed slot
        group.start_soon(limiter.acquire, "b")
        await anyio.wait_all_tasks_blocked()
        limiter.release()  # handed straight to the waiting "b"
        assert not limiter.try_acquire()
    assert limiter.in_use == 2
