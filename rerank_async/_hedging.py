"""The hedging race: a slow attempt gets more copies when slots are free; first answer wins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

import anyio

__all__ = ["ExtraSlots", "race_hedged"]

T = TypeVar("T")

# How often a race looks again for a threshold while none is known (a new client's
# requests before any answer): a small share of any reranker's latency.
_UNKNOWN_RECHECK_S: Final = 0.005


class ExtraSlots(Protocol):
    """Where each copy's extra slot comes from: taken only if free now, given back after."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


async def race_hedged(
    send: Callable[[], Awaitable[T]],
    *,
    hedge_after: float | Callable[[], float | None],
    limiter: ExtraSlots,
    on_hedge: Callable[[], None] | None = None,
    max_hedges: int = 1,
) -> T:
    """Run ``send``, and if it has not answered within ``hedge_after`` s, race a second copy.

    A heavy-tailed server keeps a few requests far longer than the rest, and a
    call waits for its slowest batch. The copy goes out only when a slot is free
    right now (``limiter.try_acquire``), so hedging never exceeds the limit nor
    delays anyone else's request. The first answer wins and the other copy is
    cancelled; only when every copy fails does the race fail, with the first error.

    With ``max_hedges`` above 1, each further ``hedge_after`` without an answer
    may send one more copy. A call waits for its slowest batch, and with one
    hedge a batch whose original *and* copy both land in the server's slow tail
    still holds its call: at a 5% tail that is 1 batch in 400, a few calls in a
    hundred when each call fans out over a dozen batches.

    The caller already holds a slot for the first copy; the copy's extra slot is
    taken and given back here.

    Args:
        send: One attempt; each copy calls it once.
        hedge_after: Seconds to wait for an answer before each hedge: copy k goes
            ``k * hedge_after`` after the first. A callable is read again while
            waiting (``hedge_after="auto"``'s threshold moves with each answer), and
            may return ``None`` while nothing is known yet: the first requests of a
            new client are hedged too, once the first answers say how long is slow.
        limiter: Where each copy's extra slot comes from.
        on_hedge: Called when a copy is sent.
        max_hedges: The most copies sent besides the first.

    Returns:
        The first successful answer.

    Raises:
        The first copy's error to fail, when no copy succeeds.
    """
    answers: list[T] = []
    failures: list[Exception] = []
    running = 0
    settled = anyio.Event()

    async def copy(holds_extra_slot: bool) -> None:
        nonlocal running
        try:
            answers.append(await send())
            settled.set()
        except Exception as error:  # kept, raised below if no copy succeeds
            failures.append(error)
        finally:
            running -= 1
            if holds_extra_slot:
                limiter.release()
            if running == 0:
                settled.set()

    threshold = hedge_after if callable(hedge_after) else lambda: hedge_after
    started = anyio.current_time()
    async with anyio.create_task_group() as racers:
        running = 1
        racers.start_soon(copy, False)
        for hedge in range(1, max_hedges + 1):
            while not settled.is_set():
                after = threshold()
                due = None if after is None else started + hedge * after
                wait = _UNKNOWN_RECHECK_S if due is None else due - anyio.current_time()
                if wait <= 0:
                    break
                with anyio.move_on_after(wait):
                    await settled.wait()
            if settled.is_set():
                break
            if limiter.try_acquire():
                if on_hedge is not None:
                    on_hedge()
                running += 1
                racers.start_soon(copy, True)
        await settled.wait()
        racers.cancel_scope.cancel()  # the slower copies, if any, are not needed
    if answers:
        return answers[0]
    raise failures[0]
