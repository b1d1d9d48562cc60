"""``Admission``: what a request must pass before it is sent, and what its answer teaches.

One object per client holds the client's limits on load: the shared pause,
the concurrency slots (fair across calls, sized by the adaptive limit), the
request and token buckets, and the retry budget. The runner wraps every HTTP
attempt in ``admitted(...)`` and reports how it ended, once, with ``answered(...)``
or ``failed(...)``; the retry decision (``_retry.RetryDecision``) reads its pause
and takes from its budget. Every request, retry or hedge, is charged the same
costs: a slot, one request and its tokens from the buckets. Order of the waits:
the pause first (nothing goes out while the client is told to wait), then the
outage gate (while the endpoint is down, one probe at a time), then a slot,
then the buckets, so that a request leaves the moment its rate share is
granted and never sits in a bucket's queue without a slot to be sent on. Each
answer also teaches the endpoint's model (``EndpointModel``: latency by size,
tail, capacity), which the runner plans with and the adaptive limit follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from functools import partial

import anyio

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    RateLimitError,
)
from .adaptive import AdaptiveLimit, LimitChange, Ticket
from .clock import EventLoopClock
from .endpoint_model import EndpointEstimate, EndpointModel
from .first_wave import FirstWave
from .latency_window import LatencyWindow
from .limiter import FairLimiter
from .outage import OutageGate
from .rate_limiter import RateLimiter
from .retry_budget import RetryBudget
from .settings import AdmissionStatistics, LoadSettings
from .shared_pause import SharedPause

__all__ = ["Admission", "AdmissionStatistics", "HedgeSlots", "LoadSettings", "is_overload"]

# Where hedge_after="auto" hedges. "The Tail at Scale" hedges at p95, which assumes
# a tail thinner than 5%: against a server whose slowest 5% take 10x (the web_tail
# benchmark) p95 falls inside the tail and no hedge fired (call p99 9x p50). At
# p90 at most about 10% of requests are hedged, within the 20% retry budget.
HEDGE_QUANTILE = 0.90

# 503 unavailable, 502/504 gateways in front of a saturated backend, 529 overloaded.
_OVERLOAD_STATUSES = frozenset({429, 502, 503, 504, 529})


def is_overload(error: BaseException) -> bool:
    """Whether a failure says "too much load": 429, 502/503/504/529, a timeout, a drop."""
    if isinstance(error, APIStatusError):
        return error.status_code in _OVERLOAD_STATUSES
    return isinstance(error, APIConnectionError)


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
        self._endpoint = EndpointModel()
        self._outage = OutageGate(patience=settings.outage_patience, clock=clock, sleep=sleep)
        self._latencies = LatencyWindow(HEDGE_QUANTILE)
        ceiling = settings.max_concurrency
        self._first_wave = FirstWave(clock, sleep, going=settings.adaptive)
        self._adaptive = AdaptiveLimit(ceiling, initial=ceiling) if settings.adaptive else None
        self._slots = FairLimiter(self._adaptive.limit if self._adaptive else ceiling)
        self._pause = SharedPause(max_pause=settings.max_pause, clock=clock, sleep=sleep)
        bucket = partial(_bucket, clock=clock, sleep=sleep)
        self._requests = bucket(settings.max_requests_per_minute)
        self._tokens = bucket(settings.max_tokens_per_minute)
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

    @property
    def in_outage(self) -> bool:  # requests held, one probe at a time (OutageGate)
        return self._outage.waiting_out

    def set_outage_patience(self, seconds: float) -> None:
        """Wait an outage out for at most ``seconds`` from now on."""
        self._outage.patience = seconds

    def endpoint(self) -> EndpointEstimate | None:  # the fitted model, once known
        return self._endpoint.estimate()

    @asynccontextmanager
    async def admitted(
        self,
        owner: Hashable,
        *,
        tokens: int = 0,
        documents: int = 0,
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
            documents: Documents the request carries, for the endpoint's model.
        """
        until = self._pause.until
        if until is not None and (pause_waited is None or until > pause_waited):
            await self._pause.wait()
        probe = (
            await self._outage.pass_through(self.take_retry)
            if self._outage.since is not None
            else 0
        )
        # The slot is taken and given back here rather than by a nested context
        # manager: each generator-based one costs a few microseconds per request.
        try:
            level = await self._slot_within_limit(owner)
        except BaseException:
            self._outage.probe_ended(probe)
            raise
        try:
            if self._requests is not None:
                await self._requests.acquire(1)
            if self._tokens is not None and tokens:
                await self._tokens.acquire(tokens)
            if first_attempt and self._budget is not None:
                self._budget.deposit()
            yield self._stamp(level, documents=documents, probe=probe)
        finally:
            self._slots.release()
            self._outage.probe_ended(probe)

    async def _slot_within_limit(self, owner: Hashable) -> int:
        """A slot that is still within the limit when its holder gets to run.

        On a busy loop a task may resume long after its slot was granted, by when
        the limit may have dropped below the slots held: it then queues again
        instead of sending a request the server has just said it cannot take.
        """
        while True:
            level = await self._slots.acquire(owner)
            await self._first_wave.pace(level)
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
        remaining = self._endpoint.smoothed - (self._clock() - ticket.sent_at)
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
        return self._stamp(self._slots.in_use, documents=0, probe=0)

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
        self._outage.on_answer()
        self._first_wave.end()
        now = self._clock()
        elapsed = now - ticket.sent_at if ticket.sent_at is not None else None
        endpoint = self._endpoint
        endpoint.on_answer(now, elapsed, documents=ticket.documents, level=ticket.level)
        if elapsed is not None:
            self._latencies.add(elapsed)
        if self._adaptive is not None:
            self._adaptive.on_success(ticket)
            capacity = endpoint.capacity()
            if capacity is not None:
                self._adaptive.on_capacity(ticket, capacity)
            elif endpoint.take_withdrawn():
                self._adaptive.forget_wall()
            self._follow()
        if limit_reset_s is not None:
            self._pause.pause_for(limit_reset_s)

    async def failed(
        self, ticket: Ticket, error: BaseException, *, limit_reset_s: float | None = None
    ) -> None:
        """Learn from a request that failed, then hold its slot if overload calls for it.

        Called once per failure, inside the ``admitted`` block that holds the slot.
        """
        if is_overload(error) and not isinstance(error, RateLimitError):
            self._outage.on_failure(probe=ticket.probe)
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
            waiting=sum((self._slots.waiting, self._pause.waiting, self._outage.waiting)),
            retry_budget_left=self._budget.left() if self._budget is not None else None,
            paused_until=self._pause.until,
            requests_this_minute=_used(self._requests),
            tokens_this_minute=_used(self._tokens),
            endpoint=self._endpoint.estimate(),
            outage_since=self._outage.since,
            outage_probes=self._outage.probes,
        )

    def _stamp(self, level: int, *, documents: int, probe: int) -> Ticket:
        epoch = 0 if self._adaptive is None else self._adaptive.on_send(level).epoch
        if level > self._slots.total:
            # Granted under a higher limit than now (the task resumed late): its
            # failure belongs to the burst that lowered the limit, not to this epoch.
            epoch = -1
        return Ticket(max(1, level), epoch, self._clock(), documents=documents, probe=probe)

    def _on_overload(self, ticket: Ticket, error: BaseException) -> None:
        if isinstance(error, RateLimitError):
            paused = self._pause.on_rate_limited(error.retry_after)
            if not paused and error.retry_after is not None and ticket.level <= 1:
                # The only request in flight: nothing else can be to blame.
                self._pause.pause_for(error.retry_after)
        if self._adaptive is None:
            return
        cap = self._first_wave.overloaded(ticket.level, error)
        if cap is not None:
            self._adaptive.on_capacity(ticket, cap)
            self._follow()
            return
        sustainable = self._endpoint.sustainable(self._clock())
        change = self._adaptive.on_overload(ticket, sustainable=sustainable)
        # While an outage is waited out its gate paces the probes; the pause would only
        # delay the resumption.
        if change is LimitChange.AT_FLOOR and self._outage.since is None:
            self._pause.on_overload_at_floor()
        self._follow()

    def _follow(self) -> None:
        assert self._adaptive is not None
        if self._adaptive.limit != self._slots.total:
            self._slots.set_total(self._adaptive.limit)


def _bucket(
    per_minute: float | None,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> RateLimiter | None:
    return RateLimiter(per_minute, clock=clock, sleep=sleep) if per_minute is not None else None


def _used(bucket: RateLimiter | None) -> int | None:
    return round(bucket.used_this_minute()) if bucket is not None else None


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
