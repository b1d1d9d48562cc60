"""The fan-out: one call's batches under the client's shared limiter, retried and split.

The layers, outermost first, each named after what it adds::

    run_call                           deadline, then the call's task group
      _run_batch_recording_failure     first error kept, the other batches cancelled
        _score_batch_splitting_too_large   a "too large" answer resent in smaller pieces
          _score_batch_with_retries    backoff, Retry-After, the retry budget
            _attempt_admitted          the client's load limits: the shared pause, one
                                       slot of the adaptive limit, the request and token
                                       buckets; what the answer says is fed back
              _send_maybe_hedged       a second copy of a slow attempt, if configured
                sender.send            the transport chain (observation, engine)

Per-request concerns (read limits) wrap the sender.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Final

import anyio

from ._admission import Admission
from ._batching import plan_batches, split_by_budget
from ._call import CallState, batch_range_bounds
from ._config import ClientOptions
from ._constants import LOGGER_NAME, MAX_SPREAD_FACTOR
from ._exceptions import APIStatusError, APITimeoutError, RerankError
from ._hedging import race_hedged
from ._pair_pool import PackedRequest, PairPool, PooledCall, PoolScores
from ._retry import RetryEvent, RetryPolicy, call_with_retries
from ._statistics import ClientStatistics
from ._transport import BatchRequest, BatchSender
from .providers import BatchScores, Provider

__all__ = ["BatchRunner"]

logger = logging.getLogger(LOGGER_NAME)

# Documents' characters above which a body waits for the encoding turn (about 0.1 ms
# of orjson, 0.5 ms of pydantic_core per MB, measured): smaller ones never wait.
LARGE_BODY_CHARS: Final = 256_000
# Copies of a slow batch ``hedge_after="auto"`` may send besides the first (each
# from the retry budget, on a free slot): the second covers a batch whose first copy
# landed in the slow tail too, which in benchmarks/bench_limits.py (web_tail, 200
# calls of 2 batches) happened to 2-3 calls a run, each held for the full 10x delay.
AUTO_MAX_HEDGES: Final = 2


class BatchRunner:
    """Owns what every call of a client shares: the limiter, demand, the batch limit.

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
        self._options = options
        self._provider = provider
        self._sender = sender
        # Every wait of the load limits sleeps as the retry policy does, so that a test's
        # set_retry_policy(RetryPolicy(sleep=...)) covers them too.
        self._admission = Admission(options.limits, sleep=self._sleep)
        # Batches planned or running and not yet finished, across calls; a new
        # call spreads itself only over slots this demand leaves free.
        self._outstanding_batches = 0
        # Lowered when the server says a batch is too large; calls plan with it.
        self._batch_limit = options.batch_size
        # Large bodies are encoded one per turn of the event loop (_encode_in_turn).
        self._encode_turn = anyio.Lock()
        # rerank_many's packed requests (see PackedRequests), sent through this runner.
        self.packed = PackedRequests(self)

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
        limits = self._admission.statistics()
        return ClientStatistics(
            in_flight=limits.in_flight,
            waiting=limits.waiting,
            outstanding_batches=self._outstanding_batches,
            batch_limit=self._batch_limit,
            max_concurrency=self._options.max_concurrency,
            concurrency_limit=limits.concurrency_limit,
            retry_budget_left=limits.retry_budget_left,
            paused_until=limits.paused_until,
            requests_this_minute=limits.requests_this_minute,
            tokens_this_minute=limits.tokens_this_minute,
        )

    async def _sleep(self, seconds: float) -> None:
        await self._options.retry.sleep(seconds)

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
            RerankError: The first batch to fail for good; ``APITimeoutError``
                when the deadline passed. Either carries ``partial``: the
                scores the call's other batches obtained.
        """
        if deadline_seconds is None:
            # No deadline, no cancel scope: entering and leaving one costs CPU per call.
            await self._run_batches(call, spread=spread)
            if call.error is not None:
                raise _with_partial(call.error, call)
            return
        with anyio.move_on_after(deadline_seconds) as deadline_scope:
            call.deadline = deadline_scope.deadline
            await self._run_batches(call, spread=spread)
        if call.error is not None:
            raise _with_partial(call.error, call)
        if deadline_scope.cancelled_caught:
            raise _with_partial(
                timeout_error(self._options, call, deadline_seconds, n_documents), call
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
        options = self._options
        if not options.split:
            return [(0, n_documents)]
        limit = self._batch_limit
        # Spread over the adaptive limit's slots (issue 11) only when the call needs several
        # requests anyway and no other call has work out (issue 10: spreading into slots the
        # next call needs sent 1.35 requests per 32-document call, measured), never for a
        # resume (call.spread), and at most MAX_SPREAD_FACTOR times the fewest requests.
        idle = spread and call.spread and n_documents > limit and self._outstanding_batches == 0
        spans = plan_batches(
            n_documents,
            batch_size=limit,
            min_batch_size=min(options.min_batch_size, limit),
            free_slots=self._admission.concurrency_limit if idle else 1,
            max_spread=MAX_SPREAD_FACTOR,
        )
        budget = self._provider.max_tokens_per_request(options.model)
        if budget is None:
            return spans
        estimate = self._provider.estimate_tokens
        query_tokens = estimate(call.query)
        costs = [query_tokens + estimate(document) for document in call.unique]
        return split_by_budget(spans, costs, budget)

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
        options = self._options
        batch = LazyBatch(
            encode=partial(self._encode_span, call, start, stop),
            n_documents=stop - start,
            document_range=call.document_range(start, stop),
            chars=sum(map(len, islice(call.unique, start, stop))),
        )
        try:
            result = await self._score_batch_with_retries(
                call, batch, partial(self._estimate_tokens, call, start, stop)
            )
        except APIStatusError as error:
            if (
                stop - start < 2
                or not options.split
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
                self._options.model, call.query, documents, call.instruction
            )
        return self._provider.encode_request(self._options.model, call.query, documents)

    async def _score_batch_with_retries(
        self, call: CallState, batch: LazyBatch, tokens: Callable[[], int]
    ) -> BatchScores:
        admission = self._admission
        cost = tokens() if admission.counts_tokens else 0
        state = _AttemptState()
        return await call_with_retries(
            partial(self._attempt_admitted, call, batch, cost, state),
            self._options.retry,
            deadline=call.deadline,
            on_retry=partial(self._log_retry, call, batch),
            may_retry=admission.may_retry,
            obey_retry_after=admission.retry_after_binds,
        )

    async def _attempt_admitted(
        self, call: CallState, batch: LazyBatch, tokens: int, state: _AttemptState
    ) -> BatchScores:
        state.attempts += 1
        admission = self._admission
        async with admission.admitted(
            call,
            tokens=tokens,
            first_attempt=state.attempts == 1,
            pause_waited=state.pause_waited,
        ) as ticket:
            call.requests += 1
            encoded = batch.encoded or await self._encode_in_turn(batch)
            try:
                result = await self._send_maybe_hedged(call, encoded)
            except Exception as error:
                paused_until = admission.settle(
                    ticket, error, limit_reset_s=getattr(error, "limit_reset_s", None)
                )
                if paused_until is not None:
                    state.pause_waited = paused_until
                raise
            admission.settle(
                ticket,
                None,
                estimated_tokens=tokens,
                used_tokens=result.input_tokens,
                limit_reset_s=result.limit_reset_s,
            )
            return result

    def _estimate_tokens(self, call: CallState, start: int, stop: int) -> int:
        """The batch's token cost before sending: the provider's own estimate per pair."""
        estimate = self._provider.estimate_tokens
        query = estimate(call.query)
        return sum(query + estimate(document) for document in call.unique[start:stop])

    async def _encode_in_turn(self, batch: LazyBatch) -> BatchRequest:
        """The batch's body, encoded now that its first attempt holds a slot.

        Encoded once and reused by every retry. Batches granted slots together
        would encode back to back in one turn of the event loop, so a large body
        takes the encoding turn: one per turn, and the loop runs between them.
        """
        if batch.chars < LARGE_BODY_CHARS:
            return batch.encode_now()
        async with self._encode_turn:
            encoded = batch.encode_now()
            await anyio.lowlevel.checkpoint()
        return encoded

    async def _send_maybe_hedged(self, call: CallState, batch: BatchRequest) -> BatchScores:
        hedge_after = self._options.hedge_after
        max_hedges = 1
        if hedge_after == "auto":
            hedge_after = self._admission.hedge_threshold()
            max_hedges = AUTO_MAX_HEDGES
        if hedge_after is None:
            return await self._sender.send(batch)

        def count_hedge() -> None:
            call.requests += 1
            call.hedges += 1

        return await race_hedged(
            partial(self._sender.send, batch),
            hedge_after=hedge_after,
            limiter=self._admission.hedge_slots,
            on_hedge=count_hedge,
            max_hedges=max_hedges,
        )

    def _split_batch(
        self, call: CallState, start: int, stop: int, error: APIStatusError
    ) -> list[tuple[int, int]]:
        """The pieces to resend a too-large batch in; remember the smaller size.

        The server's stated maximum (TEI: "maximum allowed batch size 32") is
        used when it gives one; otherwise the batch is halved.
        """
        size = stop - start
        new_limit = self._smaller_limit(error, size)
        pieces = plan_batches(size, batch_size=new_limit, min_batch_size=1, free_slots=1)
        logger.info(
            "documents %d..%d of model %s: server says batch of %d is too large (HTTP %d); "
            "resending as %d requests of at most %d",
            *batch_range_bounds(call.document_range(start, stop)),
            self._options.model, size, error.status_code, len(pieces), new_limit,
        )  # fmt: skip
        return [(start + piece_start, start + piece_stop) for piece_start, piece_stop in pieces]

    def _smaller_limit(self, error: APIStatusError, size: int) -> int:
        hint = self._provider.max_batch_size_hint(error.server_message)
        new_limit = hint if hint is not None and 0 < hint < size else -(-size // 2)
        self._batch_limit = min(self._batch_limit, new_limit)
        return new_limit

    def _log_retry(self, call: CallState, batch: LazyBatch, event: RetryEvent) -> None:
        call.retries += 1
        first, last = batch_range_bounds(batch.document_range)
        logger.info(
            "retrying documents %d..%d of model %s in %.2f s (retry %d of %d) after %s: %s",
            first, last, self._options.model, event.delay, event.attempt,
            self._options.retry.max_retries, type(event.error).__name__, event.error,
        )  # fmt: skip


class PackedRequests:
    """``rerank_many``'s packed requests, sent through a ``BatchRunner``'s retries,
    admission and sender (formats with one query per document, ``Provider.packs_pairs``).
    """

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    def open_pool(self) -> PairPool:
        """A pool that packs the pairs of ``rerank_many``'s calls into shared requests.

        For wire formats with one query per document (``Provider.packs_pairs``).
        Its requests go through the same limiter, retries, hedging and sender as
        every other batch.
        """
        return PairPool(
            batch_size=self._runner._batch_limit,
            max_in_flight=self._runner._options.max_concurrency,
            send=self._send_packed,
            split_size=self._packed_split_size,
        )

    async def run_pooled_call(
        self,
        call: CallState,
        pool: PairPool,
        *,
        deadline_seconds: float | None,
        n_documents: int,
    ) -> None:
        """Score ``call`` through ``pool``, or raise as ``run_call`` does."""
        pooled = PooledCall(call.query, call.unique, slots=call.slots)
        try:
            if deadline_seconds is None:
                await pool.score(pooled)
                return
            with anyio.move_on_after(deadline_seconds) as deadline_scope:
                await pool.score(pooled)
            if deadline_scope.cancelled_caught:
                raise timeout_error(self._runner._options, call, deadline_seconds, n_documents)
        finally:
            call.batches = pooled.batches
            call.requests = pooled.requests
            call.retries = pooled.retries
            call.input_tokens = pooled.input_tokens

    async def _send_packed(self, request: PackedRequest) -> PoolScores:
        # Each packed request queues for the limiter as an owner of its own, and
        # counts its attempts there; the pool hands the counts to the calls.
        owner = CallState(query="", unique=[], positions=None)
        model = self._runner._options.model
        batch = LazyBatch(
            encode=lambda: self._runner._provider.encode_pairs(model, *request.pairs()),
            n_documents=request.size,
            document_range=(0, request.size),
            chars=request.chars(),
        )
        result = await self._runner._score_batch_with_retries(
            owner, batch, partial(self._estimate_pair_tokens, request)
        )
        return PoolScores(
            result.scores,
            input_tokens=result.input_tokens,
            requests=owner.requests,
            retries=owner.retries,
        )

    def _packed_split_size(self, error: Exception, size: int) -> int | None:
        if (
            size < 2
            or not isinstance(error, APIStatusError)
            or not self._runner._provider.is_batch_too_large(
                error.status_code, error.server_message
            )
        ):
            return None
        new_limit = self._runner._smaller_limit(error, size)
        logger.info(
            "a packed request of %d pairs for model %s is too large (HTTP %d); "
            "resending in requests of at most %d",
            size, self._runner._options.model, error.status_code, new_limit,
        )  # fmt: skip
        return new_limit

    def _estimate_pair_tokens(self, request: PackedRequest) -> int:
        """A packed request's token cost: the provider's estimate per (query, document) pair."""
        estimate = self._runner._provider.estimate_tokens
        queries, documents = request.pairs()
        return sum(map(estimate, queries)) + sum(map(estimate, documents))


def timeout_error(
    options: ClientOptions, call: CallState, deadline_seconds: float, n_documents: int
) -> APITimeoutError:
    """The error of a call whose ``total_timeout`` passed, with how far it got."""
    scored = call.documents_scored()
    return APITimeoutError(
        f"total_timeout of {deadline_seconds} s passed with {scored} of "
        f"{n_documents} documents scored [POST {options.url}, model {options.model}]",
        url=options.url,
        model=options.model,
        documents_scored=scored,
    )


class LazyBatch:
    """A batch whose body is encoded when its first attempt holds a slot, then kept.

    A 20,000-document call must not encode all its batches before the first one
    is sent: about 4.5 ms of JSON per MB would run in one turn of the loop.
    """

    __slots__ = ("_encode", "chars", "document_range", "encoded", "n_documents")

    def __init__(
        self,
        *,
        encode: Callable[[], bytes],
        n_documents: int,
        document_range: tuple[int, int],
        chars: int,
    ) -> None:
        self._encode = encode
        self.n_documents = n_documents
        self.chars = chars
        self.document_range = document_range
        self.encoded: BatchRequest | None = None

    def encode_now(self) -> BatchRequest:
        self.encoded = BatchRequest(
            body=self._encode(), n_documents=self.n_documents, document_range=self.document_range
        )
        return self.encoded


class _AttemptState:
    """One batch's attempts so far, and the client pause its own 429 set, if any."""

    __slots__ = ("attempts", "pause_waited")

    def __init__(self) -> None:
        self.attempts = 0
        self.pause_waited: float | None = None


def _with_partial(error: Exception, call: CallState) -> Exception:
    """``error`` carrying what ``call`` scored before it failed (``error.partial``)."""
    if isinstance(error, RerankError):
        error.partial = call.partial_scores()
    return error
