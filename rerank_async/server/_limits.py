"""Provider-style limits of the local server: a concurrency cap, a rate limit, an outage.

These are the three ways a real reranker service turns a client away, made
reproducible for tests and benchmarks:

* ``max_in_flight``: above N requests in flight, a bare 429 at once (DeepInfra's
  per-account concurrency cap, TEI's "model is overloaded" queue limit);
* ``rate_limit_rps``: a token bucket of requests per second; past it a 429, with
  ``Retry-After`` (the time until the next token) only if asked for;
* ``outage_start_s`` / ``outage_duration_s``: every request answered 503 for a
  while, counted from the first inference request the server receives.

``AdmissionControl`` decides before any other work; the app only carries the
decision out. The clock is injected so that unit tests move it by hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._config import ServerConfig

__all__ = ["AdmissionControl", "Refusal", "retry_after_header"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is turned away, and how.

    Attributes:
        status: 429 or 503.
        reason: ``"max_in_flight"``, ``"rate_limit"`` or ``"outage"``, for stats.
        retry_after_s: Seconds to send as ``Retry-After``; ``None`` sends none.
    """

    status: int
    reason: str
    retry_after_s: float | None = None


class AdmissionControl:
    """The limits of one server, checked per request before any work.

    Args:
        config: The settings; only the limit and outage knobs are read.
        clock: Seconds on a monotonic clock.
    """

    def __init__(
        self, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        self._in_flight = 0
        self._rate = config.rate_limit_rps
        burst = config.rate_limit_burst
        self._burst = burst if burst is not None else max(1.0, self._rate or 0.0)
        self._tokens = self._burst
        self._refilled: float | None = None
        self._first_request: float | None = None
        self.refusals: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet finished."""
        return self._in_flight

    def admit(self) -> Refusal | None:
        """Decide on a request that just arrived; ``None`` admits it (call ``leave`` later)."""
        now = self._clock()
        if self._first_request is None:
            self._first_request = now
        refusal = self._outage(now) or self._over_concurrency() or self._over_rate(now)
        if refusal is not None:
            self.refusals[refusal.reason] = self.refusals.get(refusal.reason, 0) + 1
            return refusal
        self._in_flight += 1
        return None

    def leave(self) -> None:
        """An admitted request finished, whatever its outcome."""
        self._in_flight -= 1

    def reset(self) -> None:
        """Forget refusals and restart the outage clock (``POST /stats/reset``)."""
        self.refusals = {}
        self._first_request = None

    def _outage(self, now: float) -> Refusal | None:
        start = self._config.outage_start_s
        assert self._first_request is not None
        if start is None:
            return None
        elapsed = now - self._first_request
        if start <= elapsed < start + self._config.outage_duration_s:
            return Refusal(503, "outage")
        return None

    def _over_concurrency(self) -> Refusal | None:
        cap = self._config.max_in_flight
        if cap is not None and self._in_flight >= cap:
            return Refusal(429, "max_in_flight")
        return None

    def _over_rate(self, now: float) -> Refusal | None:
        if self._rate is None:
            return None
        if self._refilled is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        retry_after = None
        if self._config.rate_limit_retry_after:
            retry_after = (1.0 - self._tokens) / self._rate
        return Refusal(429, "rate_limit", retry_after)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (RFC 9110 allows no fractions)."""
    return str(max(1, math.ceil(seconds)))
