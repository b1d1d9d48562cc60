"""The fan-out: one call's batches under the client's shared limiter, split when too large.

The layers, outermost first, each named after what it adds::

    run_call                           the call's deadline and failure (run_to_deadline),
                                       then the call's task group
      _run_batch_recording_failure     first error kept, the other batches cancelled
        _score_batch_splitting_too_large   a "too large" answer resent in smaller pieces
          BatchAttempts.send           flow control, the retry verdict, hedging
"""

from __future__ import annotations

import logging
from functools import partial
from itertools import islice

import anyio

from ._attempts import BatchAttempts, LazyBatch
from ._batching import plan_batches, split_by_budget
from ._call import CallState, batch_range_bounds, run_to_deadline
from ._config import ClientOptions
from ._constants import LOGGER_NAME, MAX_SPREAD_FACTOR
from ._exceptions import APIStatusError
from ._flow import EndpointEstimate, choose_width
from ._models import ClientStatistics, EndpointStatistics
from ._options import RetryPolicy
from ._transports import BatchSender
from .providers import Provider

__all__ = ["BatchRunner"]

logger = logging.getLogger(LOGGER_NAME)


class BatchRunner:
    """Owns what every call of a client shares: the attempts, demand, the batch limit.

    The limiter bounds HTTP attempts in flight, not calls, and backoff sleeps hold
    no slot. Free slots go round-robin across calls, so a small call never waits
    behind every batch of a big one.

    Args:
        options: The client's resolved options.
        provider: The wire format (planning budgets, "too large" detection).
        sender: The transport chain every attempt goes through.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        provider: Provider,
        sender: BatchSender,
    ) -> None:
        self._provider = provider
        self.attempts = BatchAttempts(options, sender=sender)
        # Batches planned or running and not yet finished, across calls; a new
        # call spreads itself only over slots this demand leaves free.
        self._outstanding_batches = 0
        # Lowered when the server says a batch is too large; calls plan with it.
        self._batch_limit = options.batch_size

    @property
    def options(self) -> ClientOptions:
        """The options the runner plans and retries with."""
        return self.attempts.options

    @property
    def provider(self) -> Provider:
        """The wire format batches are encoded in."""
        return self._provider

    @property
    def batch_limit(self) -> int:
        """Most documents per request now."""
        return self._batch_limit

    def use_sender(self, sender: BatchSender) -> None:
        """Send later attempts through ``sender``."""
        self.attempts.use_sender(sender)

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``."""
        self.attempts.set_retry_policy(policy)

    def statistics(self) -> ClientStatistics:
        """A snapshot of the shared state."""
        limits = self.attempts.admission.statistics()
        return ClientStatistics(
            in_flight=limits.in_flight,
            waiting=limits.waiting,
            outstanding_batches=self._outstanding_batches,
            batch_limit=self._batch_limit,
            max_concurrency=self.options.max_concurrency,
            concurrency_limit=limits.concurrency_limit,
            retry_budget_left=limits.retry_budget_left,
            paused_until=limits.paused_until,
            requests_this_minute=limits.requests_this_minute,
            tokens_this_minute=limits.tokens_this_minute,
            endpoint=_endpoint_statistics(limits.endpoint),
            outage_since=limits.outage_since,
            outage_probes=limits.outage_probes,
        )

    async def run_call(
        self,
        call: CallState,
        *,
        deadline_seconds: float | None,
        n_documents: int,
        spread: bool = True,
    ) -> None:
        """Score every document of ``call`` into its slots, or raise the first failure.

        Args:
            call: The call's documents and the state its batches write to.
            deadline_seconds: The call's ``total_timeout``, or ``None``.
            n_documents: The caller's document count, for the timeout message.
            spread: Spread a call over idle slots for latency (``rerank``);
                ``False`` plans for throughput (``rerank_many``).

        Raises:
            RerankError: The first batch to fail for good; ``DeadlineExceededError``
                when the deadline passed. Either carries ``partial``: the scores
                the call's other batches obtained.
        """
        options = self.options
        await run_to_deadline(
            call,
            partial(self._run_batches, call, spread=spread),
            deadline_seconds=deadline_seconds,
            url=options.url,
            model=options.model,
            n_documents=n_documents,
        )

    async def _run_batches(self, call: CallState, *, spread: bool) -> None:
        """Run every batch of ``call``; a failure is recorded, and ``CallState.fail`` decides
        whether it cancels the rest.

        Each task catches its own error, so the task group never raises an
        ``ExceptionGroup``; ``run_call`` raises ``call.error`` afterwards. A
        one-batch call runs in this task, without a task group (one is entered
        only if the server answers "too large" and the batch is split).
        """
        spans = self._plan(call, spread=spread)
        if len(spans) == 1:
            call.batches += 1
            self._outstanding_batches += 1
            spans = await self._run_batch_recording_failure(call, *spans[0])
            if not spans:
                return
        async with anyio.create_task_group() as task_group:
            call.task_group = task_group
            for start, stop in spans:
                self._start_batch(call, start, stop)
                if call.large:
                    # Batches started together take their first steps in one turn of
                    # the loop; a large call's are megabytes each, so one per turn.
                    await anyio.lowlevel.checkpoint()

    def _plan(self, call: CallState, *, spread: bool) -> list[tuple[int, int]]:
        """Spans of ``call.unique`` to send: by count, then by the provider's token budget."""
        n_documents = len(call.unique)
        options = self.options
        if not options.limits.split:
            return [(0, n_documents)]
        limit = self._batch_limit
        min_batch = min(options.min_batch_size, limit)
        width = self._width(n_documents, min_batch) if spread and call.spread else None
        if width is not None:
            spans = plan_batches(n_documents, batch_size=limit, min_batch_size=1, free_slots=width)
        else:
            # No model of the endpoint yet: spread over the adaptive limit's slots only
            # when the call needs several requests anyway and no other call has work out
            # (spreading into slots the next call needs sent 1.35 requests per
            # 32-document call, measured), never for a resume (call.spread), and at
            # most MAX_SPREAD_FACTOR times the fewest requests.
            idle = spread and call.spread and n_documents > limit
            idle = idle and self._outstanding_batches == 0
            spans = plan_batches(
                n_documents,
                batch_size=limit,
                min_batch_size=min_batch,
                free_slots=self.attempts.admission.concurrency_limit if idle else 1,
                max_spread=MAX_SPREAD_FACTOR,
            )
        budget = self._provider.max_tokens_per_request(options.model)
        if budget is None:
            return spans
        estimate = self._provider.estimate_tokens
        query_tokens = estimate(call.query)
        costs = [query_tokens + estimate(document) for document in call.unique]
        return split_by_budget(spans, costs, budget)

    def _width(self, n_documents: int, min_batch: int) -> int | None:
        """A latency-planned call's number of requests, once the endpoint's model allows.

        ``None`` while the model knows one request size only: the call is planned as
        before, except that a call that fits one request, with slots free, is sent as
        two halves once, so that the model sees a second size and can tell a fixed
        cost from a per-document one.
        """
        admission = self.attempts.admission
        estimate = admission.endpoint()
        fewest = -(-n_documents // self._batch_limit)
        most = max(fewest, n_documents // max(min_batch, 1))
        free = admission.concurrency_limit - self._outstanding_batches
        if estimate is None or most <= fewest or free <= 1:
            return None
        if estimate.per_document_s is None:
            return 2 if fewest == 1 else None
        return choose_width(
            n_documents, fewest=fewest, most=most, free_slots=free, estimate=estimate
        )

    def _start_batch(self, call: CallState, start: int, stop: int) -> None:
        assert call.task_group is not None  # only ever called inside the call's group
        call.batches += 1
        self._outstanding_batches += 1
        call.task_group.start_soon(self._run_batch_task, call, start, stop)

    async def _run_batch_task(self, call: CallState, start: int, stop: int) -> None:
        for piece_start, piece_stop in await self._run_batch_recording_failure(call, start, stop):
            self._start_batch(call, piece_start, piece_stop)

    async def _run_batch_recording_failure(
        self, call: CallState, start: int, stop: int
    ) -> list[tuple[int, int]]:
        """Score one batch; return the pieces to resend when it was too large."""
        try:
            return await self._score_batch_splitting_too_large(call, start, stop)
        except Exception as error:  # recorded, re-raised by run_call
            call.fail(error)
            return []
        finally:
            self._outstanding_batches -= 1

    async def _score_batch_splitting_too_large(
        self, call: CallState, start: int, stop: int
    ) -> list[tuple[int, int]]:
        options = self.options
        batch = LazyBatch(
            encode=partial(self._encode_span, call, start, stop),
            n_documents=stop - start,
            document_range=call.document_range(start, stop),
            chars=sum(map(len, islice(call.unique, start, stop))),
            tokens=partial(self._estimate_tokens, call, start, stop),
        )
        try:
            result = await self.attempts.send(call, batch, deadline=call.deadline)
        except APIStatusError as error:
            if (
                stop - start < 2
                or not options.limits.split
                or not self._provider.is_batch_too_large(error.status_code, error.server_message)
            ):
                raise
            return self._split_batch(call, start, stop, error)
        call.record(start, result)
        return []

    def _encode_span(self, call: CallState, start: int, stop: int) -> bytes:
        documents = call.unique[start:stop]
        if call.instruction is not None:
            return self._provider.encode_instructed(
                self.options.model, call.query, documents, call.instruction
            )
        return self._provider.encode_request(self.options.model, call.query, documents)

    def _estimate_tokens(self, call: CallState, start: int, stop: int) -> int:
        """The batch's token cost before sending: the provider's own estimate per pair."""
        estimate = self._provider.estimate_tokens
        query = estimate(call.query)
        return sum(query + estimate(document) for document in call.unique[start:stop])

    def _split_batch(
        self, call: CallState, start: int, stop: int, error: APIStatusError
    ) -> list[tuple[int, int]]:
        """The pieces to resend a too-large batch in, at the size ``shrink_batch_limit`` gives."""
        size = stop - start
        new_limit = self.shrink_batch_limit(error, size)
        pieces = plan_batches(size, batch_size=new_limit, min_batch_size=1, free_slots=1)
        logger.info(
            "documents %d..%d of model %s: server says batch of %d is too large (HTTP %d); "
            "resending as %d requests of at most %d",
            *batch_range_bounds(call.document_range(start, stop)),
            self.options.model, size, error.status_code, len(pieces), new_limit,
        )  # fmt: skip
        return [(start + piece_start, start + piece_stop) for piece_start, piece_stop in pieces]

    def shrink_batch_limit(self, error: APIStatusError, size: int) -> int:
        """The smaller size to resend a too-large request of ``size`` in; calls plan with it.

        The server's stated maximum (TEI: "maximum allowed batch size 32") is used
        when it gives one; otherwise the request is halved.
        """
        hint = self._provider.max_batch_size_hint(error.server_message)
        new_limit = hint if hint is not None and 0 < hint < size else -(-size // 2)
        self._batch_limit = min(self._batch_limit, new_limit)
        return new_limit


def _endpoint_statistics(estimate: EndpointEstimate | None) -> EndpointStatistics | None:
    if estimate is None:
        return None
    return EndpointStatistics(
        fixed_s=estimate.fixed_s,
        per_document_s=estimate.per_document_s,
        tail_share=estimate.tail_share,
        tail_ratio=estimate.tail_ratio,
        capacity=estimate.capacity,
        samples=estimate.samples,
    )
