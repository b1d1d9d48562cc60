"""The fan-out: one call's batches under the client's shared limiter, retried and split.

The layers, outermost first, each named after what it adds::

    run_call                           deadline, then the call's task group
      _run_batch_recording_failure     first error kept, the other batches cancelled
        _score_batch_splitting_too_large   a "too large" answer resent in smaller pieces
          _score_batch_with_retries    backoff and Retry-After between attempts
            _attempt_under_limiter     one slot of max_concurrency per HTTP attempt
              _send_maybe_hedged       a second copy of a slow attempt, if configured
                sender.send            the transport chain (observation, engine)

Per-attempt concerns (a rate limiter, a retry budget) plug in at
``_attempt_under_limiter``; per-request ones (read limits) wrap the sender.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial

import anyio

from ._batching import plan_batches, split_by_budget
from ._call import CallState, batch_range_bounds
from ._config import ClientOptions
from ._constants import LOGGER_NAME
from ._exceptions import APIStatusError, APITimeoutError
from ._hedging import race_hedged
from ._limiter import Limiter
from ._retry import RetryEvent, RetryPolicy, call_with_retries
from ._statistics import ClientStatistics
from ._transport import BatchRequest, BatchSender
from .providers import BatchScores, Provider

__all__ = ["BatchRunner"]

logger = logging.getLogger(LOGGER_NAME)


class BatchRunner:
    """Owns what every call of a client shares: the limiter, demand, the batch limit.

    The limiter bounds HTTP attempts in flight, not calls, and backoff sleeps hold
    no slot. Free slots go round-robin across calls, so a small call never waits
    behind every batch of a big one.

    Args:
        options: The client's resolved options.
        provider: The wire format (planning budgets, "too large" detection).
        sender: The transport chain every attempt goes through.
        limiter: The one bound on attempts in flight, shared by all calls.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        provider: Provider,
        sender: BatchSender,
        limiter: Limiter,
    ) -> None:
        self._options = options
        self._provider = provider
        self._sender = sender
        self._limiter = limiter
        # Batches planned or running and not yet finished, across calls; a new
        # call spreads itself only over slots this demand leaves free.
        self._outstanding_batches = 0
        # Lowered when the server says a batch is too large; calls plan with it.
        self._batch_limit = options.batch_size

    @property
    def options(self) -> ClientOptions:
        """The options the runner plans and retries with."""
        return self._options

    @property
    def batch_limit(self) -> int:
        """Most documents per request now."""
        return self._batch_limit

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``."""
        self._options = dataclasses.replace(self._options, retry=policy)

    def statistics(self) -> ClientStatistics:
        """A snapshot of the shared state."""
        return ClientStatistics(
            in_flight=self._limiter.in_use,
            waiting=self._limiter.waiting,
            outstanding_batches=self._outstanding_batches,
            batch_limit=self._batch_limit,
            max_concurrency=self._limiter.total,
        )

    async def run_call(
        self, call: CallState, *, deadline_seconds: float | None, n_documents: int
    ) -> None:
        """Score every document of ``call`` into its slots, or raise the first failure.

        Args:
            call: The call's documents and the state its batches write to.
            deadline_seconds: The call's ``total_timeout``, or ``None``.
            n_documents: The caller's document count, for the timeout message.

        Raises:
            RerankError: The first batch to fail for good; ``APITimeoutError``
                when the deadline passed.
        """
        with anyio.move_on_after(deadline_seconds) as deadline_scope:
            call.deadline = deadline_scope.deadline
            await self._run_batches(call)
        if call.error is not None:
            raise call.error
        if deadline_scope.cancelled_caught:
            scored = call.documents_scored()
            options = self._options
            raise APITimeoutError(
                f"total_timeout of {deadline_seconds} s passed with {scored} of "
                f"{n_documents} documents scored [POST {options.url}, model {options.model}]",
                url=options.url,
                model=options.model,
                documents_scored=scored,
            )

    async def _run_batches(self, call: CallState) -> None:
        """Run every batch of ``call``; the first failure cancels the rest.

        Each task catches its own error, so the task group never raises an
        ``ExceptionGroup``; ``run_call`` raises ``call.error`` afterwards.
        """
        spans = self._plan(call)
        async with anyio.create_task_group() as task_group:
            call.task_group = task_group
            for start, stop in spans[1:]:
                self._start_batch(call, start, stop)
            # The first batch runs in this task: a one-batch call spawns no task at all.
            call.batches += 1
            self._outstanding_batches += 1
            await self._run_batch_recording_failure(call, *spans[0])

    def _plan(self, call: CallState) -> list[tuple[int, int]]:
        """Spans of ``call.unique`` to send: by count, then by the provider's token budget."""
        n_documents = len(call.unique)
        options = self._options
        if not options.split:
            return [(0, n_documents)]
        limit = self._batch_limit
        spans = plan_batches(
            n_documents,
            batch_size=limit,
            min_batch_size=min(options.min_batch_size, limit),
            free_slots=max(1, options.max_concurrency - self._outstanding_batches),
        )
        budget = self._provider.max_tokens_per_request(options.model)
        if budget is None:
            return spans
        estimate = self._provider.estimate_tokens
        query_tokens = estimate(call.query)
        costs = [query_tokens + estimate(document) for document in call.unique]
        return split_by_budget(spans, costs, budget)

    def _start_batch(self, call: CallState, start: int, stop: int) -> None:
        call.batches += 1
        self._outstanding_batches += 1
        call.task_group.start_soon(self._run_batch_recording_failure, call, start, stop)

    async def _run_batch_recording_failure(self, call: CallState, start: int, stop: int) -> None:
        try:
            await self._score_batch_splitting_too_large(call, start, stop)
        except Exception as error:  # recorded, re-raised by run_call
            call.fail(error)
        finally:
            self._outstanding_batches -= 1

    async def _score_batch_splitting_too_large(
        self, call: CallState, start: int, stop: int
    ) -> None:
        options = self._options
        batch = BatchRequest(
            body=self._provider.encode_request(options.model, call.query, call.unique[start:stop]),
            n_documents=stop - start,
            document_range=call.document_range(start, stop),
        )
        try:
            result = await self._score_batch_with_retries(call, batch)
        except APIStatusError as error:
            if (
                stop - start < 2
                or not options.split
                or not self._provider.is_batch_too_large(error.status_code, error.server_message)
            ):
                raise
            self._split_batch(call, start, stop, error)
            return
        call.record(start, result)

    async def _score_batch_with_retries(self, call: CallState, batch: BatchRequest) -> BatchScores:
        return await call_with_retries(
            partial(self._attempt_under_limiter, call, batch),
            self._options.retry,
            deadline=call.deadline,
            on_retry=partial(self._log_retry, call, batch),
        )

    async def _attempt_under_limiter(self, call: CallState, batch: BatchRequest) -> BatchScores:
        async with self._limiter.slot(call):
            call.requests += 1
            return await self._send_maybe_hedged(call, batch)

    async def _send_maybe_hedged(self, call: CallState, batch: BatchRequest) -> BatchScores:
        hedge_after = self._options.hedge_after
        if hedge_after is None:
            return await self._sender.send(batch)

        def count_hedge() -> None:
            call.requests += 1
            call.hedges += 1

        return await race_hedged(
            partial(self._sender.send, batch),
            hedge_after=hedge_after,
            limiter=self._limiter,
            on_hedge=count_hedge,
        )

    def _split_batch(self, call: CallState, start: int, stop: int, error: APIStatusError) -> None:
        """Resend a too-large batch in smaller pieces and remember the smaller size.

        The server's stated maximum (TEI: "maximum allowed batch size 32") is
        used when it gives one; otherwise the batch is halved.
        """
        size = stop - start
        hint = self._provider.max_batch_size_hint(error.server_message)
        new_limit = hint if hint is not None and 0 < hint < size else -(-size // 2)
        self._batch_limit = min(self._batch_limit, new_limit)
        pieces = plan_batches(size, batch_size=new_limit, min_batch_size=1, free_slots=1)
        logger.info(
            "documents %d..%d of model %s: server says batch of %d is too large (HTTP %d); "
            "resending as %d requests of at most %d",
            *batch_range_bounds(call.document_range(start, stop)),
            self._options.model, size, error.status_code, len(pieces), new_limit,
        )  # fmt: skip
        for piece_start, piece_stop in pieces:
            self._start_batch(call, start + piece_start, start + piece_stop)

    def _log_retry(self, call: CallState, batch: BatchRequest, event: RetryEvent) -> None:
        call.retries += 1
        first, last = batch_range_bounds(batch.document_range)
        logger.info(
            "retrying documents %d..%d of model %s in %.2f s (retry %d of %d) after %s: %s",
            first, last, self._options.model, event.delay, event.attempt,
            self._options.retry.max_retries, type(event.error).__name__, event.error,
        )  # fmt: skip
