"""``Admission``: what a request must pass before it is sent, and what its answer teaches.

One object per client holds the client's limits on load: the shared pause,
the concurrency slots (fair across calls, sized by the adaptive limit), the
request and token buckets, and the retry budget. The runner wraps every HTTP
attempt in ``admitted(...)`` and reports how it ended, once, with ``answered(...)``
or ``failed(...)``; the retry decision (``_retry.RetryDecision``) reads its pause
and takes from its budget. Every request, retry or hedge, is charged the same
costs: a slot, one request and its tokens from the buckets. Order of the waits:
the pause first (nothing goes out while the client is told to wait), then a
slot, then the buckets, so that a request leaves the moment its rate share is
granted and never sits in a bucket's queue without a slot to be sent on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import sniffio

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    RateLimitError,
)
from .adaptive import AdaptiveLimit, LimitChange, Ticket
from .latency_window import LatencyWindow
from .limiter import FairLimiter
from .rate_limiter import RateLimiter
from .retry_budget import RetryBudget
from .shared_pause import SharedPause

__all__ = ["Admission", "AdmissionStatistics", "HedgeSlots", "LoadSettings", "is_overload"]

# Answers of the last second make a rate worth trusting once there are this many.
_RATE_WINDOW_S = 1.0
_MIN_ANSWERS_FOR_RATE = 8
# Where hedge_after="auto" hedges. "The Tail at Scale" hedges at p95, which assumes
# a tail thinner than 5%: against a server whose slowest 5% take 10x (the web_tail
# benchmark) p95 falls inside the tail and no hedge fired (call p99 9x p50). At
# p90 at most about 10% of requests are hedged, within the 20% retry budget.
HEDGE_QUANTILE = 0.90
# 503 unavailable, 502/504 gateways in front of a saturated backend, 529 overloaded.
_OVERLOAD_STATUSES = frozenset({429, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How a client limits the load it puts on a server.

    Attributes:
        max_concurrency: The most requests in flight (the adaptive limit's ceiling).
        adaptive: Whether the limit follows the server; ``False`` keeps it at
            ``max_concurrency``.
        max_requests_per_minute: Client-side request rate limit, or ``None``.
        max_tokens_per_minute: Client-side token rate limit, or ``None``.
        retry_budget_ratio: Retries allowed per first attempt; ``None``: no budget.
        retry_budget_floor: Retries allowed per second regardless of traffic.
        max_pause: Most seconds one signal may pause the whole client.
    """

    max_concurrency: int
    adaptive: bool = True
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None
    retry_budget_ratio: float | None = 0.2
    retry_budget_floor: float = 2.0
    max_pause: float = 60.0


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """The load limits' state at one moment (see ``RerankClient.statistics()``)."""

    concurrency_limit: int
    in_flight: int
    waiting: int
    retry_budget_left: float | None
    paused_until: float | None
    requests_this_minute: int | None
    tokens_this_minute: int | None


def is_overload(error: BaseException) -> bool:
    """Whether a failure says "too much load": 429, 502/503/504/529, a timeout, a drop."""
    if isinstance(error, APIStatusError):
        return error.status_code in _OVERLOAD_STATUSES
    return isinstance(error, APIConnectionError)


class EventLoopClock:
    """``anyio.current_time()``, with the event loop's library looked up once.

    anyio looks up the running library on every call (1.0 us, against 0.08 for
    the clock itself, measured), and the admission path reads the clock five
    times per request. On asyncio the loop's time is ``time.monotonic()``; on
    other libraries (trio, whose clock a test may replace) anyio is still asked.
    """

    __slots__ = ("_read",)

    def __init__(self) -> None:
        self._read: Callable[[], float] | None = None

    def __call__(self) -> float:
        read = self._read
        if read is None:
            on_asyncio = sniffio.current_async_library() == "asyncio"
            read = self._read = time.monotonic if on_asyncio else anyio.current_time
        return read()


class Admission:
    """A client's gate for requests: pause, slots, buckets, budget.

    Args:
        settings: The limits.
        clock: Seconds on a monotonic clock; the event loop's by default.
        sleep: How to wait; ``anyio.sleep`` by default.
    """

    def __init__(
        self,
        settings: LoadSettings,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._clock = clock = clock if clock is not None else EventLoopClock()
        self._sleep = sleep
        # Smoothed seconds from admission to a successful answer (EWMA, 1/8 like TCP's SRTT).
        self._latency = 0.0
        self._answered: deque[float] = deque()  # answer times in the last second
        self._latencies = LatencyWindow(HEDGE_QUANTILE)
        ceiling = settings.max_concurrency
        self._adaptive = AdaptiveLimit(ceiling) if settings.adaptive else None
        self._slots = FairLimiter(self._adaptive.limit if self._adaptive else ceiling)
        self._pause = SharedPause(max_pause=settings.max_pause, clock=clock, sleep=sleep)
        self._requests = (
            RateLimiter(settings.max_requests_per_minute, clock=clock, sleep=sleep)
            if settings.max_requests_per_minute is not None
            else None
        )
        self._tokens = (
            RateLimiter(settings.max_tokens_per_minute, clock=clock, sleep=sleep)
            if settings.max_tokens_per_minute is not None
            else None
        )
        self._reserve = settings.max_concurrency
        self._budget = self._new_budget(settings.retry_budget_ratio, settings.retry_budget_floor)

    def _new_budget(self, ratio: float | None, per_second: float) -> RetryBudget | None:
        if ratio is None:
            return None
        return RetryBudget(ratio, per_second, reserve=self._reserve, clock=self._clock)

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock every wait and deadline here is measured on."""
        return self._clock

    @property
    def counts_tokens(self) -> bool:
        """Whether requests must say their token cost (a token limit is set)."""
        return self._tokens is not None

    @property
    def concurrency_limit(self) -> int:
        """Requests allowed in flight now."""
        return self._slots.total

    @asynccontextmanager
    async def admitted(
        self,
        owner: Hashable,
        *,
        tokens: int = 0,
        first_attempt: bool = True,
        pause_waited: float | None = None,
    ) -> AsyncIterator[Ticket]:
        """Hold the right to send one request for the ``async with`` block.

        Report how the request ended with ``answered`` or ``failed`` inside the block.

        Args:
            owner: Whose turn it is in the fair slot queue (a call).
            tokens: The request's estimated token cost, for the token bucket.
            first_attempt: A batch's first try earns retry budget; a retry does not.
            pause_waited: The end of the client pause this request's backoff already
                waited out (``RetryDecision.waited_until``): only a later extension
                holds it back again.
        """
        until = self._pause.until
        if until is not None and (pause_waited is None or until > pause_waited):
            await self._pause.wait()
        # The slot is taken and given back here rather than by a nested context
        # manager: each generator-based one costs a few microseconds per request.
        level = await self._slot_within_limit(owner)
        try:
            if self._requests is not None:
                await self._requests.acquire(1)
            if self._tokens is not None and tokens:
                await self._tokens.acquire(tokens)
            if first_attempt and self._budget is not None:
                self._budget.deposit()
            yield self._stamp(level)
        finally:
            self._slots.release()

    async def _slot_within_limit(self, owner: Hashable) -> int:
        """A slot that is still within the limit when its holder gets to run.

        On a busy loop a task may resume long after its slot was granted, by when
        the limit may have dropped below the slots held: it then queues again
        instead of sending a request the server has just said it cannot take.
        """
        while True:
            level = await self._slots.acquire(owner)
            if self._slots.in_use <= self._slots.total:
                return level
            self._slots.release()

    async def _cool_down(self, ticket: Ticket) -> None:
        """Hold a slot freed by a fast overload answer for about one answer's time.

        A 429 or 503 answered at once frees its slot at once, and the next batch
        takes it and is refused at once too: one slot can burn through dozens
        of requests per round trip. While overload signals dominate, a slot
        freed by one is held until a normal answer would have come back.
        """
        if self._adaptive is None or not self._adaptive.overloaded or ticket.sent_at is None:
            return
        remaining = self._latency - (self._clock() - ticket.sent_at)
        if remaining > 0:
            with anyio.CancelScope(shield=True):
                await self._sleep(remaining)

    def try_admit_extra(self, tokens: int = 0) -> Ticket | None:
        """Admit optional work (a hedge) only if it can go now, charged as any request.

        It needs a free slot, a request and its tokens from the buckets, and one
        retry from the budget, all available without waiting; otherwise nothing
        is taken. The caller must ``release_extra()`` when done.
        """
        if self._pause.until is not None or not self._slots.try_acquire():
            return None
        requests, token_bucket = self._requests, self._tokens if tokens else None
        if (
            (requests is not None and not requests.can_take(1))
            or (token_bucket is not None and not token_bucket.can_take(tokens))
            or (self._budget is not None and not self._budget.try_withdraw())
        ):
            self._slots.release()
            return None
        if requests is not None:
            requests.take(1)
        if token_bucket is not None:
            token_bucket.take(tokens)
        return self._stamp(self._slots.in_use)

    def release_extra(self) -> None:
        """Give back a slot taken by ``try_admit_extra``."""
        self._slots.release()

    def hedge_threshold(self) -> float | None:
        """The rolling p90 of answer latency (``hedge_after="auto"``), once known."""
        return self._latencies.threshold()

    def hedge_slots(self, tokens: int) -> HedgeSlots:
        """Where a hedging race takes each copy's extra slot, for a request of ``tokens``."""
        return HedgeSlots(self, tokens)

    @property
    def paused_until(self) -> float | None:
        """The clock time the whole client is paused until, or ``None``."""
        return self._pause.until

    def take_retry(self) -> bool:
        """Take one retry from the budget; ``False`` when it is spent."""
        return self._budget is None or self._budget.try_withdraw()

    def set_retry_budget(self, ratio: float | None, per_second: float) -> None:
        """Budget retries from now on as ``ratio`` of requests plus ``per_second``."""
        if self._budget is not None and (ratio, per_second) == (
            self._budget.ratio,
            self._budget.floor_per_second,
        ):
            return
        self._budget = self._new_budget(ratio, per_second)

    def answered(
        self,
        ticket: Ticket,
        *,
        limit_reset_s: float | None = None,
        estimated_tokens: int = 0,
        used_tokens: int | None = None,
    ) -> None:
        """Learn from a request that was answered.

        Args:
            ticket: What ``admitted`` yielded.
            limit_reset_s: Seconds until a rate limit the response's headers say is
                spent resets (the transport reads them), when they say so.
            estimated_tokens: The cost the request was admitted with.
            used_tokens: The server's reported usage, when it reported one.
        """
        if self._tokens is not None and used_tokens is not None and estimated_tokens:
            self._tokens.correct(estimated_tokens, used_tokens)
        self._pause.on_answer()
        now = self._clock()
        elapsed = now - ticket.sent_at if ticket.sent_at is not None else None
        self._answered.append(now)
        if elapsed is not None:
            self._latencies.add(elapsed)
            self._latency = (
                elapsed if self._latency == 0 else (0.875 * self._latency + 0.125 * elapsed)
            )
        if self._adaptive is not None:
            self._adaptive.on_success(ticket)
            self._follow()
        if limit_reset_s is not None:
            self._pause.pause_for(limit_reset_s)

    async def failed(
        self, ticket: Ticket, error: BaseException, *, limit_reset_s: float | None = None
    ) -> None:
        """Learn from a request that failed, then hold its slot if overload calls for it.

        Called once per failure, inside the ``admitted`` block that holds the slot.
        """
        if is_overload(error):
            self._on_overload(ticket, error)
        elif self._adaptive is not None:
            self._adaptive.on_neutral(ticket)
        if limit_reset_s is not None:
            self._pause.pause_for(limit_reset_s)
        if is_overload(error):
            await self._cool_down(ticket)

    def statistics(self) -> AdmissionStatistics:
        """The current state, for ``RerankClient.statistics()``."""
        return AdmissionStatistics(
            concurrency_limit=self._slots.total,
            in_flight=self._slots.in_use,
            waiting=self._slots.waiting + self._pause.waiting,
            retry_budget_left=self._budget.left() if self._budget is not None else None,
            paused_until=self._pause.until,
            requests_this_minute=(
                round(self._requests.used_this_minute()) if self._requests is not None else None
            ),
            tokens_this_minute=(
                round(self._tokens.used_this_minute()) if self._tokens is not None else None
            ),
        )

    def _stamp(self, level: int) -> Ticket:
        epoch = 0 if self._adaptive is None else self._adaptive.on_send(level).epoch
        if level > self._slots.total:
            # Granted under a higher limit than now (the task resumed late): its
            # failure belongs to the burst that lowered the limit, not to this epoch.
            epoch = -1
        return Ticket(level=max(1, level), epoch=epoch, sent_at=self._clock())

    def _on_overload(self, ticket: Ticket, error: BaseException) -> None:
        if isinstance(error, RateLimitError):
            paused = self._pause.on_rate_limited(error.retry_after)
            if not paused and error.retry_after is not None and ticket.level <= 1:
                # The only request in flight: nothing else can be to blame.
                self._pause.pause_for(error.retry_after)
        if self._adaptive is None:
            return
        change = self._adaptive.on_overload(ticket, sustainable=self._sustainable())
        if change is LimitChange.AT_FLOOR:
            self._pause.on_overload_at_floor()
        self._follow()

    def _sustainable(self) -> int | None:
        """Concurrency that the answers of the last second need (Little's law).

        ``0`` when nothing was answered in that second; ``None`` when the answers
        span less than two round trips, which tells a burst, not a rate.
        """
        now = self._clock()
        answers = self._answered
        while answers and answers[0] < now - _RATE_WINDOW_S:
            answers.popleft()
        if not answers:
            return 0
        span = now - answers[0]
        if len(answers) < _MIN_ANSWERS_FOR_RATE or self._latency <= 0:
            return None
        if span <= 0 or span < 2 * self._latency:
            return None
        return max(1, math.ceil(len(answers) / span * self._latency))

    def _follow(self) -> None:
        assert self._adaptive is not None
        if self._adaptive.limit != self._slots.total:
            self._slots.set_total(self._adaptive.limit)


class HedgeSlots:
    """The hedging race's view of admission: each copy is admitted as an extra request."""

    __slots__ = ("_admission", "_tokens")

    def __init__(self, admission: Admission, tokens: int) -> None:
        self._admission = admission
        self._tokens = tokens

    def try_acquire(self) -> bool:
        return self._admission.try_admit_extra(self._tokens) is not None

    def release(self) -> None:
        self._admission.release_extra()
