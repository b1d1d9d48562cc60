"""A clock that moves only when told, and a sleep that moves it (aiolimiter's test style)."""

from __future__ import annotations

import anyio


class FakeClock:
    """``clock()`` reads the time; ``await sleep(s)`` moves it by ``s`` and records ``s``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()
