"""``RetryBudget``: retries (and hedges) across a client at most a share of its requests.

Per-batch retries multiply the load on a server that is already down: with
four retries each, an outage turns every batch into five requests. Finagle and
Linkerd cap retries with a budget instead, and gRPC's ``retryThrottling`` does
the same with a token bucket: each first attempt deposits ``ratio`` of a token,
each retry withdraws one, and a small ``floor_per_second`` keeps a trickle of
retries possible for a client that sends little. The balance is capped, so a
long healthy spell does not save up enough to hammer the next outage.

The class holds no timer: time is read from ``clock`` when the balance is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import anyio

__all__ = ["RetryBudget"]

# The balance never exceeds this many seconds of the floor plus this many requests' share.
_FLOOR_SECONDS: Final = 10.0
_RESERVE_REQUESTS: Final = 100


class RetryBudget:
    """Retries at most ``ratio`` of first attempts, plus ``floor_per_second``.

    Args:
        ratio: Retries allowed per first attempt (0.2: one retry per five requests).
        floor_per_second: Retries allowed per second regardless of traffic.
        reserve: Extra retries a new client starts with, besides ten seconds of the
            floor: the client passes its ``max_concurrency``, so that one round
            trip in which every slot failed can be retried once.
        clock: Seconds on a monotonic clock; anyio's by default.

    Raises:
        ValueError: A negative or non-finite value.
    """

    def __init__(
        self,
        ratio: float,
        floor_per_second: float,
        *,
        reserve: float = 0.0,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        for name, value in (
            ("ratio", ratio),
            ("floor_per_second", floor_per_second),
            ("reserve", reserve),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"retry budget {name} must be a finite number >= 0, got {value}")
        self._ratio = ratio
        self._floor = floor_per_second
        # A new client has earned no share of its requests yet: it starts with the
        # floor's ten seconds and the reserve.
        start = floor_per_second * _FLOOR_SECONDS + reserve
        self._cap = max(start, floor_per_second * _FLOOR_SECONDS + ratio * _RESERVE_REQUESTS)
        self._clock = clock
        self._balance = start
        self._updated: float | None = None
        self._retries = 0
        self._refused = 0

    @property
    def ratio(self) -> float:
        """Retries allowed per first attempt."""
        return self._ratio

    @property
    def floor_per_second(self) -> float:
        """Retries allowed per second regardless of traffic."""
        return self._floor

    @property
    def retries(self) -> int:
        """Retries (and hedges) granted so far."""
        return self._retries

    @property
    def refused(self) -> int:
        """Retries refused so far because the budget was spent."""
        return self._refused

    def left(self) -> float:
        """Retries that could be granted now."""
        self._accrue()
        return self._balance

    def deposit(self) -> None:
        """A first attempt was sent: it earns ``ratio`` of a retry."""
        self._accrue()
        self._balance = min(self._cap, self._balance + self._ratio)

    def try_withdraw(self) -> bool:
        """Take one retry if the budget has one; ``False`` (and nothing taken) if not."""
        self._accrue()
        if self._balance >= 1.0:
            self._balance -= 1.0
            self._retries += 1
            return True
        self._refused += 1
        return False

    def _accrue(self) -> None:
        now = self._clock()
        if self._updated is not None and now > self._updated:
            self._balance = min(self._cap, self._balance + (now - self._updated) * self._floor)
        self._updated = now
