"""When to retry a batch, how long to wait, and the retry loop itself.

This is the only module that imports tenacity. The rules follow the OpenAI and
Anthropic SDKs: retry connection failures, timeouts and the transient statuses
below; never retry a request the server rejected as malformed or unauthorized.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final, Protocol, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, stop_never

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    DeadlineExceededError,
    RateLimitError,
    RerankError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
)
from ._options import RetryPolicy

__all__ = [
    "RETRYABLE_STATUS_CODES",
    "NoSignals",
    "RetryDecision",
    "RetryEvent",
    "RetrySignals",
    "RetryVerdict",
    "backoff_delay",
    "call_with_retries",
    "is_retryable",
    "parse_retry_after",
]

T = TypeVar("T")

# 408 request timeout, 409 conflict (lock contention), 425 too early, 429 rate
# limit or model scaling up (DeepInfra), 500/502/503/504 server and gateway
# faults, 529 overloaded (Anthropic-style). 501 and 505 are permanent.
RETRYABLE_STATUS_CODES: Final = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})

# 2**62 seconds is already absurd; a larger exponent would overflow float math.
_MAX_BACKOFF_EXPONENT: Final = 62


def is_retryable(error: BaseException) -> bool:
    """Whether a failed batch is worth sending again.

    Connection failures and timeouts, the transient statuses in
    ``RETRYABLE_STATUS_CODES``, and malformed 2xx bodies (a truncating proxy
    or an overloaded server) are; every other status is final, and so is a
    body over the size limit (the same request would get the same answer) and
    the call's own deadline.
    """
    if isinstance(error, ResponseTooLargeError | DeadlineExceededError):
        return False
    if isinstance(error, APIStatusError):
        return error.status_code in RETRYABLE_STATUS_CODES
    return isinstance(error, APIConnectionError | ResponseValidationError)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it does not say.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI-style servers) first,
    then ``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
    A date in the past means "now": 0.

    Args:
        headers: Response headers (case-insensitive lookups, as httpx gives).
        now: Unix time to measure an HTTP-date against; the wall clock if None.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        value = _finite_float(milliseconds)
        if value is not None:
            return max(value / 1000.0, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    value = _finite_float(raw)
    if value is not None:
        return max(value, 0.0)
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient with servers that omit it
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def backoff_delay(
    attempt: int,
    *,
    initial_delay: float,
    max_delay: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Exponential backoff with full jitter (AWS Architecture Blog, 2015).

    The ceiling doubles per attempt from ``initial_delay`` up to ``max_delay``;
    the wait is drawn uniformly below it so that batches failed together do
    not retry in lockstep.

    Args:
        attempt: 1 for the wait after the first failure.
        initial_delay: Ceiling after the first failure, seconds.
        max_delay: Largest ceiling, seconds.
        uniform: Random draw, injectable for tests.
    """
    exponent = min(max(attempt - 1, 0), _MAX_BACKOFF_EXPONENT)
    ceiling = min(max_delay, initial_delay * 2.0**exponent)
    return uniform(0.0, ceiling) if ceiling > 0 else 0.0


class RetrySignals(Protocol):
    """What the client's flow control knows that a retry decision needs (``Admission``)."""

    @property
    def paused_until(self) -> float | None:
        """The clock time the whole client is paused until, or ``None``."""

    @property
    def in_outage(self) -> bool:
        """Whether the client is waiting out an outage (holding requests, probing)."""

    def take_retry(self) -> bool:
        """Take one retry from the client's budget; ``False`` when it is spent."""


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    """Whether a failed attempt is tried again, and when.

    Attributes:
        retry: Try again after ``delay``.
        delay: Seconds to wait first (backoff, ``Retry-After`` or the client's pause).
        error: What the batch fails with when ``retry`` is false: the attempt's own
            error, or ``RetryBudgetExhaustedError`` wrapping it.
        reason: Why, for logs: "retry", "final", "attempts", "deadline", "budget",
            "outage" (retried at the outage gate, not counted as an attempt).
    """

    retry: bool
    delay: float
    error: BaseException
    reason: str


class RetryDecision:
    """The one owner of "is this failed attempt retried, and after how long?".

    Every input is weighed here, in one place: whether the failure is retryable,
    the attempts left, the server's ``Retry-After``, the client-wide pause, the
    call's deadline, the retry budget and an outage being waited out. The runner
    asks, and obeys the verdict.
    One decision serves one batch, and remembers the client pause it has already
    waited out, so that a pause is obeyed once: in the backoff, not again at the
    gate (``waited_until``, which flow control reads).

    Args:
        policy: Backoff and the ``Retry-After`` cap.
        max_retries: Retries after the first attempt.
        signals: The client's pause and budget.
        deadline: ``anyio.current_time()`` value past which no retry starts.
        clock: The clock ``deadline`` and the pause are on.
    """

    __slots__ = (
        "clock",
        "deadline",
        "forgiven",
        "max_retries",
        "policy",
        "signals",
        "waited_until",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        max_retries: int,
        signals: RetrySignals,
        *,
        deadline: float = math.inf,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self.policy = policy
        self.max_retries = max_retries
        self.signals = signals
        self.deadline = deadline
        self.clock = clock
        # The end of the client pause this batch's last backoff already covered.
        self.waited_until: float | None = None
        # Attempts that failed while an outage was waited out: they are not counted.
        self.forgiven = 0

    def __call__(self, failure: BaseException, attempt: int) -> RetryVerdict:
        """The verdict on attempt number ``attempt`` (1 for the first), failed with ``failure``."""
        if not is_retryable(failure):
            return RetryVerdict(False, 0.0, failure, "final")
        now = self.clock()
        if (
            self.signals.in_outage
            and self.max_retries > 0
            and not isinstance(failure, RateLimitError)
        ):
            # The endpoint is down and the client holds every request at its outage
            # gate, which lets one probe through at a time and paces it (and takes
            # each probe from the budget): the attempt goes back to wait there.
            if now >= self.deadline:
                return RetryVerdict(False, 0.0, failure, "deadline")
            self.forgiven += 1
            return RetryVerdict(True, 0.0, failure, "outage")
        if attempt - self.forgiven > self.max_retries:
            return RetryVerdict(False, 0.0, failure, "attempts")
        paused_until = self.signals.paused_until
        retry_after = getattr(failure, "retry_after", None)
        # A server's Retry-After wins over backoff, since it knows when capacity returns.
        # A 429's binds only while the whole client is paused for it (429s are dense, or
        # it was the only request in flight): an isolated 429 on a busy service is
        # retried on the normal backoff, as its 503 neighbours are.
        rate_limited = isinstance(failure, RateLimitError)
        obeyed = isinstance(retry_after, float | int) and (
            not rate_limited or paused_until is not None
        )
        if obeyed:
            delay = min(float(retry_after), self.policy.max_retry_after)  # type: ignore[arg-type]
        else:
            delay = backoff_delay(
                attempt,
                initial_delay=self.policy.initial_delay,
                max_delay=self.policy.max_delay,
                uniform=self.policy.uniform,
            )
        unwaited = paused_until is not None and (
            self.waited_until is None or paused_until > self.waited_until
        )
        if unwaited:
            # Nothing is sent before the pause ends: wait it out here, once, rather
            # than back off and then queue for it again at the gate.
            assert paused_until is not None
            delay = max(delay, paused_until - now)
        # Sleeping into the deadline only to be cancelled would hide the real failure.
        if now + delay >= self.deadline:
            return RetryVerdict(False, delay, failure, "deadline")
        # A retry the server paced with Retry-After is free: every request of the client
        # waits that pause out, and charging it drained the budget at the start of a job
        # over its rate limit (1-6 of 40 requests failed in bench_limits.py).
        if not (rate_limited and obeyed) and not self.signals.take_retry():
            return RetryVerdict(False, delay, _budget_exhausted(failure), "budget")
        if unwaited:
            self.waited_until = paused_until
        return RetryVerdict(True, delay, failure, "retry")


class NoSignals:
    """No client pause and no budget: for a retry loop used on its own."""

    paused_until: float | None = None
    in_outage: bool = False

    def take_retry(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry about to happen, for logging and usage counting."""

    attempt: int
    delay: float
    error: BaseException | None


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    decide: Callable[[BaseException, int], RetryVerdict],
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or ``decide`` says it fails for good.

    tenacity runs the loop; its ``retry`` and ``wait`` both read the one verdict
    that ``decide`` gives per failure, so nothing else decides a part.

    Args:
        attempt: One try; it raises a ``RerankError`` on failure.
        decide: The verdict on a failure (``RetryDecision``).
        sleep: How to wait between attempts.
        on_retry: Called before each backoff sleep.

    Returns:
        What the successful attempt returned.

    Raises:
        RetryBudgetExhaustedError: The budget refused a retry; the error that
            would have been retried is its ``__cause__`` and ``last_error``.
        The last attempt's error, unchanged (never ``tenacity.RetryError``).
    """
    # Fast path: most batches succeed at once, and building a tenacity loop costs
    # more CPU than a whole request on a fast endpoint (benchmarks/bench_retry_path.py).
    # Only a failure the verdict retries enters the loop, which replays it first.
    try:
        return await attempt()
    except Exception as error:
        first = decide(error, 1)
        if not first.retry:
            if first.error is error:
                raise
            raise first.error from error
        replay: list[Exception] = [error]
    verdicts = [first]

    async def replay_then_attempt() -> T:
        if replay:
            raise replay.pop()
        return await attempt()

    def judge(state: RetryCallState) -> bool:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None else None
        if failure is None:
            return False
        if state.attempt_number > 1:  # the first failure was judged above, once
            verdicts.append(decide(failure, state.attempt_number))
        return verdicts[-1].retry

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None else None
            on_retry(RetryEvent(state.attempt_number, state.upcoming_sleep, failure))

    retrying = AsyncRetrying(
        retry=judge,
        stop=stop_never,  # the verdict counts the attempts and watches the deadline
        wait=lambda _state: verdicts[-1].delay,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(replay_then_attempt)
    except Exception as error:
        final = verdicts[-1].error
        if final is error:
            raise
        raise final from error


def _budget_exhausted(failure: BaseException) -> RetryBudgetExhaustedError:
    last = failure if isinstance(failure, RerankError) else RerankError(str(failure))
    error = RetryBudgetExhaustedError(
        f"retry budget exhausted, not retried: {last.message} (retries across this client "
        "are capped at a share of its requests; see RetryPolicy.budget_ratio)",
        last_error=last,
        url=last.url,
        model=last.model,
        document_range=last.document_range,
    )
    error.__cause__ = failure
    return error
