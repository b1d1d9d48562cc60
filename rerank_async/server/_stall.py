"""The local server's stall: every request held while the server is frozen.

A stop-the-world pause (a garbage collector, a GPU driver reset, a noisy neighbour) freezes
a real service for a moment: nothing it holds is answered until the pause ends, and a
request that arrives meanwhile waits too. ``stall_duration_s`` / ``stall_every_s`` /
``stall_start_s`` reproduce that, on a schedule counted from the first inference request
(as the outage is), so that a load generator's view of the pause can be checked: a
closed-loop client sends nothing while it waits and its percentiles barely move; an
open-loop one keeps sending, and every call that meets the pause shows it (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ._config import ServerConfig

__all__ = ["Stall"]


class Stall:
    """When the server is frozen, and for how much longer.

    The pauses begin ``stall_start_s`` seconds after the first inference request (by
    default ``stall_every_s``), again every ``stall_every_s`` seconds when that is set, and
    each lasts ``stall_duration_s``.

    Args:
        config: The settings; only the stall knobs are read.
        clock: Seconds on a monotonic clock.
    """

    def __init__(
        self, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._duration = config.stall_duration_s
        self._every = config.stall_every_s
        start = config.stall_start_s if config.stall_start_s is not None else self._every
        self._start = start if self._duration > 0 else None
        self._clock = clock
        self._origin: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether any pause is scheduled."""
        return self._start is not None

    def mark_request(self) -> None:
        """Note an inference request's arrival; the first one starts the schedule."""
        if self._origin is None:
            self._origin = self._clock()

    def reset(self) -> None:
        """Restart the schedule at the next request (``POST /stats/reset``)."""
        self._origin = None

    def remaining_s(self) -> float:
        """Seconds until the pause in progress ends; 0.0 outside a pause."""
        if self._start is None or self._origin is None:
            return 0.0
        elapsed = self._clock() - self._origin - self._start
        if elapsed < 0:
            return 0.0
        if self._every is not None:
            elapsed = math.fmod(elapsed, self._every)
        elif elapsed >= self._duration:
            return 0.0  # a single pause, over
        return max(0.0, self._duration - elapsed)
