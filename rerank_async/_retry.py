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
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from ._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
)
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    RerankError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
)

__all__ = [
    "RETRYABLE_STATUS_CODES",
    "RetryPolicy",
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
    body over the size limit (the same request would get the same answer).
    """
    if isinstance(error, ResponseTooLargeError):
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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a batch is retried.

    Attributes:
        max_retries: Retries after the first attempt; 0 disables retrying.
        initial_delay: Backoff ceiling after the first failure, seconds.
        max_delay: Largest backoff ceiling, seconds.
        max_retry_after: Most seconds a server's ``Retry-After`` is obeyed.
        sleep: How to wait; tests inject a fake that records delays.
        uniform: Random draw for jitter; tests inject a fixed one.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, repr=False)
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def delay_for(
        self, attempt: int, error: BaseException | None, *, obey_retry_after: bool = True
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt``.

        A server's ``Retry-After`` wins (capped at ``max_retry_after``), since
        it knows when capacity returns; otherwise jittered exponential backoff.
        DeepInfra's 429s while a model scales up usually carry no
        ``Retry-After``, so they take the backoff path. ``obey_retry_after=False``
        takes it too (an isolated 429 on a busy service, see ``Admission``).
        """
        retry_after = getattr(error, "retry_after", None) if obey_retry_after else None
        if isinstance(retry_after, float | int):
            return min(float(retry_after), self.max_retry_after)
        return backoff_delay(
            attempt,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
            uniform=self.uniform,
        )


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry about to happen, for logging and usage counting."""

    attempt: int
    delay: float
    error: BaseException | None


class _StopAtDeadline(stop_base):
    """Stop when the next wait would end past the call's deadline.

    Sleeping into a deadline only to be cancelled hides the real failure; the
    caller gets the last error instead. The deadline is on anyio's clock, the
    one ``move_on_after`` uses.
    """

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return anyio.current_time() + retry_state.upcoming_sleep >= self._deadline


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline: float = math.inf,
    on_retry: Callable[[RetryEvent], None] | None = None,
    may_retry: Callable[[BaseException | None], bool] | None = None,
    obey_retry_after: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or retries run out.

    Args:
        attempt: One try; it raises a ``RerankError`` on failure.
        policy: Retry limits and backoff.
        deadline: ``anyio.current_time()`` value after which no retry starts.
        on_retry: Called before each backoff sleep.
        may_retry: Asked before each retry, with the failure (the client's retry
            budget); when it says no, the retry does not happen.
        obey_retry_after: Whether an error's ``Retry-After`` sets the wait;
            always when not given.

    Returns:
        What the successful attempt returned.

    Raises:
        RetryBudgetExhaustedError: ``may_retry`` refused a retry; the error that
            would have been retried is its ``__cause__`` and ``last_error``.
        The last attempt's error, unchanged (never ``tenacity.RetryError``).
    """
    # Fast path: most batches succeed at once, and building a tenacity loop costs
    # more CPU than a whole request on a fast endpoint. Only a retryable failure
    # enters the loop, which replays that failure as its first attempt.
    try:
        return await attempt()
    except Exception as error:
        if policy.max_retries == 0 or not is_retryable(error):
            raise
        first_failure: list[Exception] = [error]

    async def replay_then_attempt() -> T:
        if first_failure:
            raise first_failure.pop()
        return await attempt()

    stop: stop_base = stop_after_attempt(policy.max_retries + 1)
    if math.isfinite(deadline):
        stop = stop | _StopAtDeadline(deadline)

    def before_sleep(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        if may_retry is not None and not may_retry(failure):
            raise _budget_exhausted(failure)
        if on_retry is not None:
            on_retry(RetryEvent(state.attempt_number, state.upcoming_sleep, failure))

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        obey = obey_retry_after is None or failure is None or obey_retry_after(failure)
        return policy.delay_for(state.attempt_number, failure, obey_retry_after=obey)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        stop=stop,
        wait=wait,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(replay_then_attempt)


def _budget_exhausted(failure: BaseException | None) -> RetryBudgetExhaustedError:
    last = failure if isinstance(failure, RerankError) else RerankError(str(failure))
    error = RetryBudgetExhaustedError(
        f"retry budget exhausted, not retried: {last.message} (retries across this client "
        "are capped at a share of its requests; see retry_budget_ratio)",
        last_error=last,
        url=last.url,
        model=last.model,
        document_range=last.document_range,
    )
    error.__cause__ = failure
    return error
