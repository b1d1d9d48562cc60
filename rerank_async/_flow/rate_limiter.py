"""``RateLimiter``: a cost-weighted token bucket for requests or tokens per minute.

Cohere, Voyage and Jina meter each key by requests and by tokens per minute.
A request waits for its share before it is sent, so a bulk job runs at the
limit instead of into it. Shaped after aiolimiter's ``AsyncLimiter`` (one
class, a leaky bucket, FIFO waiters, tested on a moved clock), but written for
anyio, so it works on every backend, and weighted by cost: a request for 32
long documents takes more of a token budget than one for 3 short ones.

The bucket refills continuously at ``per_minute / 60`` per second and holds at
most ``burst`` (by default a tenth of a second's worth, at least 1): requests are
paced rather than bunched, so a client set to exactly its provider's rate never
empties the provider's own bucket, and one that has been idle does not then send
a minute's worth at once, which a provider that meters with a sliding window
would reject. A cost larger than the burst waits for a full
bucket and then leaves it in debt, so the long-run rate still holds.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

__all__ = ["RateLimiter"]

_TOLERANCE: Final = 1e-6
# Default burst, in seconds of rate: small, so that a client that paces itself at a
# provider's own rate never finds the provider's bucket empty.
_DEFAULT_BURST_S: Final = 0.1


class RateLimiter:
    """At most ``per_minute`` units of cost per minute, spread evenly.

    Args:
        per_minute: Units (requests or tokens) allowed per minute; > 0.
        burst: Most units sent at once after an idle spell; a tenth of a
            second's worth (at least 1) by default.
        clock: Seconds on a monotonic clock; anyio's by default.
        sleep: How to wait; ``anyio.sleep`` by default. Tests pass a fake that
            moves their clock.

    Raises:
        ValueError: ``per_minute`` or ``burst`` is not a positive finite number.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not math.isfinite(per_minute) or per_minute <= 0:
            raise ValueError(f"per_minute must be a positive number, got {per_minute}")
        self._rate = per_minute / 60.0
        capacity = max(1.0, self._rate * _DEFAULT_BURST_S) if burst is None else burst
        if not math.isfinite(capacity) or capacity <= 0:
            raise ValueError(f"burst must be a positive number, got {capacity}")
        self._per_minute = per_minute
        self._capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._level = capacity
        self._updated: float | None = None
        self._lock = anyio.Lock()  # FIFO: waiters are served in arrival order
        self._waiting = 0
        # Cost taken in the current minute (from the first acquire), for statistics().
        self._minute_start: float | None = None
        self._used_this_minute = 0.0

    @property
    def per_minute(self) -> float:
        """The configured rate."""
        return self._per_minute

    @property
    def waiting(self) -> int:
        """Acquirers waiting for their share."""
        return self._waiting

    def used_this_minute(self) -> float:
        """Cost taken since the current minute began (minutes count from first use)."""
        if self._minute_start is None:
            return 0.0
        if self._clock() - self._minute_start >= 60.0:
            return 0.0
        return self._used_this_minute

    def available(self) -> float:
        """Units that could be taken now without waiting (negative while in debt)."""
        self._refill()
        return self._level

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` units are available, then take them.

        Cancellation while waiting takes nothing.

        Raises:
            ValueError: ``cost`` is negative or not finite.
        """
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(f"cost must be a finite number >= 0, got {cost}")
        self._waiting += 1
        try:
            async with self._lock:
                needed = min(cost, self._capacity)
                while True:
                    self._refill()
                    # A hair short is close enough: float refills may never quite get there.
                    if self._level >= needed - _TOLERANCE:
                        break
                    wait = (needed - self._level) / self._rate
                    await self._sleep(wait)
                    # A sleep lasts at least what it was asked for; a test's sleep may
                    # move no clock, and must not make this spin.
                    self._refill(at_least=wait)
                self._take(cost)
        finally:
            self._waiting -= 1

    def can_take(self, cost: float) -> bool:
        """Whether ``cost`` units are there now, with nobody queued ahead (for optional work)."""
        self._refill()
        return self._waiting == 0 and self._level >= min(cost, self._capacity) - _TOLERANCE

    def take(self, cost: float) -> None:
        """Take ``cost`` units now, without waiting; ask ``can_take`` first."""
        self._take(cost)

    def correct(self, estimated: float, actual: float) -> None:
        """Account for the real cost of a request that took ``estimated`` units.

        A server's reported usage replaces the estimate: the difference is taken
        (or given back, up to a full bucket) so that later requests wait for it.
        """
        self._refill()
        self._level = min(self._capacity, self._level - (actual - estimated))
        self._count(actual - estimated)

    def _take(self, cost: float) -> None:
        self._level -= cost
        self._count(cost)

    def _count(self, cost: float) -> None:
        now = self._clock()
        if self._minute_start is None or now - self._minute_start >= 60.0:
            self._minute_start = now
            self._used_this_minute = 0.0
        self._used_this_minute = max(0.0, self._used_this_minute + cost)

    def _refill(self, *, at_least: float = 0.0) -> None:
        now = self._clock()
        if self._updated is not None:
            elapsed = max(now - self._updated, at_least)
            self._level = min(self._capacity, self._level + elapsed * self._rate)
        self._updated = now
