"""The public option objects: ``Limits`` and ``RetryPolicy``, in httpx's ``Limits`` shape.

``RerankClient`` keeps its common options at the top level and groups the rest
here, as httpx does with ``AsyncClient(limits=Limits(...), timeout=Timeout(...))``.
Each object checks its own fields when it is built, so a bad value fails where it
is written, with the field's name in the message. Both are frozen: change one
with ``dataclasses.replace``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ._checks import check_int, check_seconds, is_number
from ._constants import (
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_OUTAGE_PATIENCE,
    DEFAULT_RETRY_BUDGET_PER_SECOND,
    DEFAULT_RETRY_BUDGET_RATIO,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
)

__all__ = ["Limits", "RetryPolicy", "check_number"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a client sends and how fast: request sizes, concurrency behaviour, rates.

    The bound itself, ``max_concurrency``, and the largest request, ``batch_size``,
    stay top-level options of the client.

    Attributes:
        min_batch_size: Fewest documents per request when a call is spread over idle
            concurrency slots; ``None`` for 8, or ``batch_size`` if that is smaller.
        split: Split calls into batches. ``False`` sends each call as one request,
            for listwise models whose scores depend on the other documents in the
            request; a call over ``batch_size`` then fails with ``ValueError``
            before any request.
        dedupe: Send identical documents of one call once.
        adaptive_concurrency: Let the number of requests in flight follow the
            server: it backs off on 429, 503, timeouts and dropped connections and
            grows while requests succeed, never above ``max_concurrency`` nor below
            1 (docs/rate-limits.md). ``False`` keeps it at ``max_concurrency``.
        max_requests_per_minute: Send at most this many requests per minute, paced
            evenly; ``None`` for no limit.
        max_tokens_per_minute: Send at most this many tokens per minute, by the
            provider's estimate corrected from reported usage; ``None`` for none.

    Raises:
        TypeError, ValueError: A field is of the wrong type or out of range; the
            message names it.
    """

    min_batch_size: int | None = None
    split: bool = True
    dedupe: bool = True
    adaptive_concurrency: bool = True
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        if self.min_batch_size is not None:
            check_int("limits.min_batch_size", self.min_batch_size, minimum=1)
        for name in ("split", "dedupe", "adaptive_concurrency"):
            _check_bool(f"limits.{name}", getattr(self, name))
        for name in ("max_requests_per_minute", "max_tokens_per_minute"):
            rate = getattr(self, name)
            if rate is not None:
                check_number(f"limits.{name}", rate, positive=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How failed requests are retried: backoff, ``Retry-After``, the retry budget.

    How many times is the client's ``max_retries``; this says how long to wait and
    how much of the client's traffic retries may be.

    Attributes:
        initial_delay: Backoff ceiling after a first failure, seconds. The wait is
            drawn below a ceiling that doubles per attempt (full jitter).
        max_delay: Largest backoff ceiling, seconds.
        max_retry_after: Most seconds a server's ``Retry-After`` is obeyed, and the
            longest one signal may pause the whole client.
        budget_ratio: Retries (and hedges) across the client are at most this
            share of its requests, plus ``budget_per_second``; past that a batch
            fails at once with ``RetryBudgetExhaustedError``. ``None`` for no
            budget (only ``max_retries`` per batch).
        budget_per_second: Retries allowed per second regardless of traffic.
        outage_patience: Seconds an outage is waited out. When attempts fail in a
            row with no answer between them (503s, refused connections), the client
            holds its requests and probes with one at a time; the first answer
            releases them all. Attempts that fail meanwhile do not count against
            ``max_retries``; calls still fail at ``total_timeout``, and after this
            long the held requests go out and fail as before. ``0`` never waits.
        sleep: How to wait. The testing seam: a recorder makes backoff instant
            and observable, without real sleeps.
        uniform: The jitter's random draw; tests inject a fixed one.

    Raises:
        TypeError, ValueError: A field is of the wrong type or out of range; the
            message names it.
    """

    initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    budget_ratio: float | None = DEFAULT_RETRY_BUDGET_RATIO
    budget_per_second: float = DEFAULT_RETRY_BUDGET_PER_SECOND
    outage_patience: float = DEFAULT_OUTAGE_PATIENCE
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, repr=False)
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "max_retry_after", "outage_patience"):
            check_seconds(f"retry.{name}", getattr(self, name), allow_zero=True)
        if self.budget_ratio is not None:
            check_number("retry.budget_ratio", self.budget_ratio, positive=False)
        check_number("retry.budget_per_second", self.budget_per_second, positive=False)
        if not callable(self.sleep) or not callable(self.uniform):
            raise TypeError("retry.sleep and retry.uniform must be callables")


def check_number(name: str, value: object, *, positive: bool) -> float:
    """``value`` as a finite number, ``> 0`` when ``positive``, else ``>= 0``."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return float(value)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
