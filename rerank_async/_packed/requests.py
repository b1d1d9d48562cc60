"""``PackedRequests``: ``rerank_many``'s packed requests, sent as every other batch is.

A pool's requests go through the runner's ``BatchAttempts`` (flow control, the
retry verdict, hedging) and its calls through ``run_to_deadline`` (one deadline,
``error.partial`` on every failure), exactly as a plain call's batches do.
"""

from __future__ import annotations

import logging
from functools import partial

from .._attempts import LazyBatch
from .._call import CallState, run_to_deadline
from .._constants import LOGGER_NAME
from .._exceptions import APIStatusError, RetryBudgetExhaustedError, is_endpoint_wide
from .._runner import BatchRunner
from .pool import PackedRequest, PairPool, PooledCall, PoolScores

__all__ = ["PackedCounters", "PackedRequests"]

logger = logging.getLogger(LOGGER_NAME)


class PackedCounters:
    """One packed request as the flow control sees it: its own turn, and its counts.

    The pool hands the counts to the calls the request carried.
    """

    __slots__ = ("hedges", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.hedges = 0


class PackedRequests:
    """Packs ``rerank_many``'s calls into shared requests (``Provider.packs_pairs``).

    Args:
        runner: Sends the requests, and owns the batch limit they are packed to.
    """

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    def open_pool(self) -> PairPool:
        """A pool that packs the pairs of ``rerank_many``'s calls into shared requests."""
        return PairPool(
            batch_size=self._runner.batch_limit,
            max_in_flight=self._runner.options.max_concurrency,
            send=self._send,
            split_size=self._split_size,
            query_specific=_query_specific,
        )

    async def run_pooled_call(
        self,
        call: CallState,
        pool: PairPool,
        *,
        deadline_seconds: float | None,
        n_documents: int,
    ) -> None:
        """Score ``call`` through ``pool``, or raise as ``BatchRunner.run_call`` does."""
        pooled = PooledCall(call.query, call.unique, slots=call.slots)
        options = self._runner.options
        try:
            await run_to_deadline(
                call,
                partial(_score_recording_failure, pool, pooled, call),
                deadline_seconds=deadline_seconds,
                url=options.url,
                model=options.model,
                n_documents=n_documents,
            )
        finally:
            call.batches = pooled.batches
            call.requests = pooled.requests
            call.retries = pooled.retries
            call.input_tokens = pooled.input_tokens

    async def _send(self, request: PackedRequest) -> PoolScores:
        runner = self._runner
        provider = runner.provider
        model = runner.options.model
        counters = PackedCounters()
        batch = LazyBatch(
            encode=lambda: provider.encode_pairs(model, *request.pairs()),
            n_documents=request.size,
            document_range=(0, request.size),
            chars=request.chars(),
            tokens=partial(self._estimate_pair_tokens, request),
        )
        # A packed request serves several calls, each with its own deadline: it is
        # retried while any could still use it, and a call past its deadline stops
        # waiting for it on its own.
        result = await runner.attempts.send(counters, batch, deadline=_latest_deadline(request))
        return PoolScores(
            result.scores,
            input_tokens=result.input_tokens,
            requests=counters.requests,
            retries=counters.retries,
        )

    def _split_size(self, error: Exception, size: int) -> int | None:
        if (
            size < 2
            or not isinstance(error, APIStatusError)
            or not self._runner.provider.is_batch_too_large(error.status_code, error.server_message)
        ):
            return None
        new_limit = self._runner.shrink_batch_limit(error, size)
        logger.info(
            "a packed request of %d pairs for model %s is too large (HTTP %d); "
            "resending in requests of at most %d",
            size, self._runner.options.model, error.status_code, new_limit,
        )  # fmt: skip
        return new_limit

    def _estimate_pair_tokens(self, request: PackedRequest) -> int:
        """A packed request's token cost: the provider's estimate per (query, document) pair."""
        estimate = self._runner.provider.estimate_tokens
        queries, documents = request.pairs()
        return sum(map(estimate, queries)) + sum(map(estimate, documents))


async def _score_recording_failure(pool: PairPool, pooled: PooledCall, call: CallState) -> None:
    pooled.deadline = call.deadline
    try:
        await pool.score(pooled)
    except Exception as error:  # recorded, raised with its partial by run_to_deadline
        call.fail(error)


def _query_specific(error: Exception) -> bool:
    """Whether a packed request's failure for good may belong to one query alone.

    Not when it holds for the whole endpoint (a refused key, an unknown model), nor
    when the retry budget is spent: resending parts would only add load.
    """
    return not is_endpoint_wide(error) and not isinstance(error, RetryBudgetExhaustedError)


def _latest_deadline(request: PackedRequest) -> float:
    return max(call.deadline for call in request.calls.values())
