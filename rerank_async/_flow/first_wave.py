"""``FirstWave``: a fresh client's first burst, widened on a fast clock until an answer.

The adaptive limit starts below a wide ceiling so that an unknown cap is not
flooded, and doubles once per round trip: a fresh client's first wide call then
waits one round trip more than a fixed bound would (0.54x a semaphore loop on a
first 1,024-document call, measured). But a server over its cap refuses with a
bare 429 that comes back in about a millisecond on loopback, while answers take
tens: so until the first answer or refusal, the limit doubles every
``_STEP_S`` instead. A healthy server sees the full width within a few
milliseconds of the first request; an unknown cap stops the wave at its first
refusal, as the adaptive limit's own start would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from .adaptive import AdaptiveLimit

__all__ = ["FirstWave"]

_STEP_S: Final = 0.002


class FirstWave:
    """Doubles ``limit`` every ``_STEP_S`` while requests wait, until ``end()``.

    Args:
        limit: The adaptive limit to widen (``None``: adaptive concurrency is off).
        clock: Seconds on a monotonic clock.
        sleep: How to wait for the next step.
    """

    def __init__(
        self,
        limit: AdaptiveLimit | None,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None  # the next doubling, once a request waited
        self.waiting = 0
        self.active = limit is not None and limit.in_slow_start

    def end(self) -> None:
        """An answer or a refusal came back: from now on the adaptive limit alone decides."""
        self.active = False

    async def widen(self) -> None:
        """Wait for the next step, then double the limit (once per step, by the first to wake)."""
        now = self._clock()
        target = self._next
        if target is None:
            target = self._next = now + _STEP_S
        self.waiting += 1
        try:
            if target > now:
                await self._sleep(target - now)
        finally:
            self.waiting -= 1
        # A sleep that moves no clock still counts as the step: it must not make this spin.
        limit = self._limit
        if self.active and self._next == target and limit is not None:
            self._next = target + _STEP_S
            limit.widen(2 * limit.limit)
            self.active = limit.in_slow_start
