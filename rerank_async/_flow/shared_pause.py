"""``SharedPause``: a client-wide "send nothing before" time.

A 429 with ``Retry-After`` pauses only the batch that got it; the client's
other slots keep hitting the same wall. When the *client as a whole* is over a
limit, every new request should wait instead. But a busy shared service also
answers a random few requests with 429 or 503, and pausing every slot for each
of those would stall a healthy job. The two are told apart by how dense the
429s are among the latest answers: a client over its limit sees them in runs
(every request past the limit is refused), isolated 429s are a few percent.

Three things set the pause:

* a ``Retry-After`` 429 while at least a quarter of the latest answers were
  429s (``on_rate_limited``);
* a provider's rate-limit headers saying nothing is left until a reset
  (``pause_for``);
* overload with the concurrency limit already at 1 (``on_overload_at_floor``):
  waiting is then the only way left to lighten the load, so the pause grows
  exponentially while it lasts, like TCP's retransmission timer, and resets on
  the first success.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

__all__ = ["SharedPause"]

# Answers remembered, and how many of them must be 429s to mean "the whole client
# is over its limit" (a quarter). A client over its limit is refused at once, so
# it gets there within milliseconds, a fresh one within its first burst. Random
# 429s at 5% must not: judged as a quarter of 16 answers (at least 2), 91 of 200
# simulated runs of 400 answers paused, mostly at the start, where the first
# answers back are the fast refusals; with these values none did
# (tests/unit/test_shared_pause.py). Waiting for 16 answers before judging at all
# let a fresh client over a 20 requests/s limit spend its retry budget first.
_WINDOW: Final = 32
_DENSE_429S: Final = 8
# Pause after overload at concurrency 1: from this, doubling, up to the cap (seconds).
_FLOOR_PAUSE_FIRST: Final = 0.05
_FLOOR_PAUSE_MAX: Final = 2.0


class SharedPause:
    """A time before which no request of the client may be sent.

    Args:
        max_pause: Most seconds one signal may pause the client (the client's
            ``max_retry_after``).
        clock: Seconds on a monotonic clock; anyio's by default.
        sleep: How to wait; ``anyio.sleep`` by default.
    """

    def __init__(
        self,
        *,
        max_pause: float = 60.0,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._until = -math.inf
        self._answers: deque[bool] = deque(maxlen=_WINDOW)  # True: a 429
        self._floor_pause = 0.0
        self._waiting = 0
        self._pauses = 0

    @property
    def until(self) -> float | None:
        """The clock time before which nothing is sent, or ``None`` when not paused."""
        if self._until == -math.inf:
            return None  # never paused, or the pause is over: every request asks, cheaply
        if self._until > self._clock():
            return self._until
        self._until = -math.inf
        return None

    @property
    def waiting(self) -> int:
        """Requests held back by the pause now."""
        return self._waiting

    @property
    def pauses(self) -> int:
        """How many times a signal paused (or extended the pause of) the client."""
        return self._pauses

    async def wait(self) -> None:
        """Return once the pause (which may be extended meanwhile) is over."""
        if self._until <= self._clock():
            return
        self._waiting += 1
        try:
            # Sleep to the pause's end, again only if it was extended meanwhile: a
            # test's sleep that moves no clock must not make this spin.
            target = self._until
            while True:
                remaining = target - self._clock()
                if remaining > 0:
                    await self._sleep(remaining)
                if self._until <= target:
                    return
                target = self._until
        finally:
            self._waiting -= 1

    def pause_for(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (capped at ``max_pause``) from now."""
        seconds = min(max(seconds, 0.0), self._max_pause)
        until = self._clock() + seconds
        if until > self._until:
            self._until = until
            self._pauses += 1

    def on_answer(self) -> None:
        """A request was answered (not with a 429): calmer, and the floor pause resets."""
        self._answers.append(False)
        self._floor_pause = 0.0

    def on_rate_limited(self, retry_after: float | None) -> bool:
        """A 429 arrived; pause everyone if 429s are dense and the server said how long.

        Returns:
            Whether the client is now paused for it.
        """
        self._answers.append(True)
        if retry_after is None or sum(self._answers) < _DENSE_429S:
            return False
        self.pause_for(retry_after)
        return True

    def on_overload_at_floor(self) -> float:
        """Overload while only one request is allowed in flight: pause, longer each time.

        Returns:
            The pause just set, in seconds.
        """
        self._floor_pause = min(_FLOOR_PAUSE_MAX, max(_FLOOR_PAUSE_FIRST, 2.0 * self._floor_pause))
        self.pause_for(self._floor_pause)
        return self._floor_pause
