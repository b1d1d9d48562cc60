"""A concurrency limiter that grants free slots round-robin across calls.

A plain FIFO limiter (``anyio.CapacityLimiter``) makes a 3-document query wait
behind all 157 batches of a 10,000-document query that arrived first. Here each
caller (a ``rerank`` call) queues its own waiters, and a freed slot goes to the
next caller in turn, so small calls finish in one round trip while big ones
still use every slot nobody else wants.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import anyio

__all__ = ["FairLimiter", "Limiter"]


class Limiter(Protocol):
    """What the runner and the hedging race need from a concurrency limiter.

    ``FairLimiter`` is the one implementation today; an adaptive limit can take
    its place without the runner changing.
    """

    @property
    def total(self) -> int:
        """How many slots exist now."""
        ...

    @property
    def in_use(self) -> int:
        """How many slots are held now."""
        ...

    @property
    def waiting(self) -> int:
        """How many acquirers are queued."""
        ...

    def slot(self, owner: Hashable) -> AbstractAsyncContextManager[int]:
        """Hold one slot for the ``async with`` block, queued under ``owner``; yields its level."""
        ...

    def try_acquire(self) -> bool:
        """Take a free slot without waiting, or return ``False``."""
        ...

    def release(self) -> None:
        """Give back a slot taken with ``try_acquire``."""
        ...


class FairLimiter:
    """At most ``total`` holders at once; waiting owners are served round-robin.

    Args:
        total: Slots (>= 1).
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self._total = total
        self._free = total
        # Owners with waiters, in service order; each holds its waiters in arrival order.
        self._waiting: OrderedDict[Hashable, deque[_Grant]] = OrderedDict()

    @property
    def total(self) -> int:
        """How many slots exist."""
        return self._total

    def set_total(self, total: int) -> None:
        """Move the bound: new slots go to waiters at once; removed ones are withheld.

        Holders above a lowered total keep their slots; released slots are kept
        back until the holders fit under the new total.
        """
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self._free += total - self._total
        self._total = total
        while self._free > 0 and self._waiting:
            self._free -= 1
            self._hand_over()

    @property
    def in_use(self) -> int:
        """How many slots are held now."""
        return self._total - self._free

    @property
    def waiting(self) -> int:
        """How many acquirers are queued."""
        return sum(len(queue) for queue in self._waiting.values())

    @asynccontextmanager
    async def slot(self, owner: Hashable) -> AsyncIterator[int]:
        """Hold one slot for the ``async with`` block, queued under ``owner``.

        Yields the number of holders when the slot was granted, itself included.
        """
        level = await self.acquire(owner)
        try:
            yield level
        finally:
            self.release()

    async def acquire(self, owner: Hashable) -> int:
        """Wait for a slot; cancellation while waiting takes nothing.

        Returns:
            The number of holders at the moment of the grant, this one included
            (the adaptive limit's "level" of the request about to be sent).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._free > 0 and not self._waiting:
            # Uncontended: take it without yielding. The request sent under the slot
            # yields soon enough, and a shielded checkpoint here cost 7 µs per request
            # (a cancel scope entered and left), measured.
            self._free -= 1
            return self.in_use
        granted = _Grant()
        queue = self._waiting.setdefault(owner, deque())
        queue.append(granted)
        try:
            await granted.wait()
            return granted.level
        except BaseException:
            if granted.is_set():
                # The slot was handed over as we were cancelled: pass it on.
                self.release()
            else:
                queue.remove(granted)
                if not queue and self._waiting.get(owner) is queue:
                    del self._waiting[owner]
            raise

    def try_acquire(self) -> bool:
        """Take a slot only if one is free and nobody is waiting; never waits.

        For optional extra work (a hedged request) that must not delay anyone.
        """
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        return False

    def release(self) -> None:
        """Give a slot back: to the next owner in turn, or to the free pool."""
        if not self._waiting or self._free < 0:
            self._free += 1  # to the pool, or to pay back slots a lowered total withholds
            return
        self._hand_over()

    def _hand_over(self) -> None:
        owner, queue = next(iter(self._waiting.items()))
        granted = queue.popleft()
        if queue:
            self._waiting.move_to_end(owner)  # its next waiter goes to the back of the line
        else:
            del self._waiting[owner]
        granted.level = self.in_use
        granted.set()


class _Grant:
    """A waiter's event, carrying the holder count at the moment it was granted."""

    __slots__ = ("_event", "level")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.level = 0

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()
