"""``FirstWave``: a new client's first burst, paced until the endpoint first answers.

A new client knows nothing of the endpoint's capacity. Starting the adaptive
limit low (16 of 32) kept a burst from running far over an unknown cap, but
made every new client's first wide call wait one round trip more (0.83-0.93x a
semaphore loop, benchmarks/bench_planner.py). Instead the limit starts at the
ceiling and the burst is paced: the first ``free`` requests go at once, each
one above them ``spacing`` seconds after the one before. A server over its cap
rejects at once, and rejections come back much faster than answers, so the
first bare 429 arrives while the wave is still going out; the limit then stops
just below the level it came at (``Admission``), and the rest of the wave
waits in the client's queue instead of being refused. The first answer of any
kind ends the wave: from then on the adaptive limit follows the answers.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from .._exceptions import RateLimitError

__all__ = ["FirstWave"]

# Requests sent at once before pacing starts: the lowest cap worth probing for.
FREE: Final = 8
# Between two paced requests: a loopback server's rejection takes about a millisecond
# to come back to a Python client sending a burst (benchmarks/bench_limits.py).
SPACING_S: Final = 0.001


class FirstWave:
    """Paces requests above ``free`` in flight until the endpoint first answers.

    Args:
        clock: Seconds on a monotonic clock.
        sleep: How to wait.
        free: Requests in flight that are never paced.
        spacing: Seconds between two paced requests.
        going: Whether to pace at all (not when the limit is fixed).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        free: int = FREE,
        spacing: float = SPACING_S,
        going: bool = True,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.free = free
        self._spacing = spacing
        # Paced requests go one at a time, in the order they came (anyio's lock is
        # FIFO), each ``spacing`` after the one before actually went: after the loop
        # was held up they do not all go at once.
        self._turn = anyio.Lock()
        self._last_paced = -math.inf
        self.going = going

    async def pace(self, level: int) -> None:
        """Wait until a request at ``level`` in flight (itself included) may go."""
        if not self.going or level <= self.free:
            return
        async with self._turn:
            wait = self._last_paced + self._spacing - self._clock()
            if self.going and wait > 0:
                await self._sleep(wait)
            self._last_paced = self._clock()

    def overloaded(self, level: int, error: BaseException) -> int | None:
        """The cap a request's overload signal reveals, if it is the wave's first and
        a 429 above the unpaced start: the level below it. Any signal ends the wave."""
        going, self.going = self.going, False
        if going and level > self.free and isinstance(error, RateLimitError):
            return level - 1
        return None

    def end(self) -> None:
        """The endpoint answered: nothing is paced any more."""
        self.going = False
