"""``CallScorer``: one call from its checked arguments to its ``RerankResult``.

What ``RerankClient.rerank`` does between the public API and the fan-out: the
call's checks, the resume of a failed call, deduplication, one pass of the runner
(or of ``rerank_many``'s packing pool), and the result with its ``Usage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial

from ._call import CallState
from ._checks import check_encodable_in_slices, check_int
from ._config import (
    NOT_GIVEN,
    NotGiven,
    resolve_call,
    resolve_call_timeout,
    resolve_instruction,
)
from ._fleet import Fleet
from ._long_documents import LongDocumentPolicy
from ._many import RequestLike, RerankOutcome, rerank_each
from ._models import RerankResult, Usage
from ._packed import PackedRequests, PairPool
from ._partial import PartialScores
from ._resume import checked_resume, score_the_gaps
from ._runner import BatchRunner
from ._tracing import rerank_span

__all__ = ["CallScorer"]


class CallScorer:
    """Scores calls through a client's runner.

    Args:
        runner: The fan-out every call's batches go through.
        long_documents: How documents over a length are cut or windowed, or ``None``.
        fleet: The client's score cache (only the texts it lacks are sent) and its
            fallbacks (where a call that fails for good is re-run whole, per request
            in ``rerank_many`` too).

    Attributes:
        packed: ``rerank_many``'s packed requests, for wire formats with one query
            per document.
    """

    def __init__(
        self,
        runner: BatchRunner,
        long_documents: LongDocumentPolicy | None = None,
        *,
        fleet: Fleet | None = None,
    ) -> None:
        self._runner = runner
        self._long_documents = long_documents
        self.cache = None if fleet is None else fleet.cache
        self.fallback = None if fleet is None else fleet.fallback
        self.packed = PackedRequests(runner)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        resume: PartialScores | None = None,
        spread: bool = True,
        pool: PairPool | None = None,
        instruction: str | NotGiven | None = NOT_GIVEN,
    ) -> RerankResult:
        """One call: checked, then one pass of the runner or of the pair pool.

        Raises:
            TypeError, ValueError: Bad input, before any request.
            RerankError: The call failed; ``error.partial`` holds what was scored.
        """
        primary = partial(
            self._rerank,
            query,
            documents,
            top_k=top_k,
            total_timeout=total_timeout,
            resume=resume,
            spread=spread,
            pool=pool,
            instruction=instruction,
        )
        if self.fallback is None or resume is not None:
            # A resume completes this model's own partial scores: never another model's.
            return await primary()
        return await self.fallback.rerank(
            primary,
            query,
            documents,
            top_k=top_k,
            total_timeout=total_timeout,
            instruction=instruction,
        )

    def rerank_many(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        *,
        max_pending: int | None,
        fail_fast: bool,
        total_timeout: float | NotGiven | None,
    ) -> AbstractAsyncContextManager[AsyncIterator[RerankOutcome]]:
        """``RerankClient.rerank_many``: each request through ``rerank``."""
        options = self._runner.options
        if max_pending is None:
            max_pending = 4 * options.max_concurrency
        check_int("max_pending", max_pending, minimum=1)
        deadline_seconds = resolve_call_timeout(options.total_timeout, total_timeout)
        if options.limits.split and self._runner.provider.packs_pairs(options.model):
            # One query per document on the wire: the requests share full batches.
            pool = self.packed.open_pool()
            return rerank_each(
                partial(self.rerank, pool=pool),
                requests,
                max_pending=max_pending,
                fail_fast=fail_fast,
                deadline_seconds=deadline_seconds,
                beside=pool.run,
            )
        # Bulk work is planned for throughput: no call is spread over idle slots.
        return rerank_each(
            partial(self.rerank, spread=False),
            requests,
            max_pending=max_pending,
            fail_fast=fail_fast,
            deadline_seconds=deadline_seconds,
        )

    async def _rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None,
        total_timeout: float | NotGiven | None,
        resume: PartialScores | None,
        spread: bool,
        pool: PairPool | None,
        instruction: str | NotGiven | None,
    ) -> RerankResult:
        """The call on this client's own endpoints, inside its span."""
        options = self._runner.options
        # One CLIENT span per call, from its Usage and outcome; a shared no-op unless a
        # tracer provider is configured (see _tracing.py).
        with rerank_span(
            provider=self._runner.provider.name,
            model=options.model,
            url=options.url,
            documents=documents,
            top_k=top_k,
        ) as span:
            call_instruction = resolve_instruction(options, self._runner.provider, instruction)
            if call_instruction is not None:
                # The wire carries one instruction per request: no packing with other calls.
                pool = None
            request = resolve_call(
                options, query, documents, top_k=top_k, total_timeout=total_timeout
            )
            checked = request.documents
            resume = checked_resume(resume, len(checked))
            await check_encodable_in_slices(checked)
            if resume is None:
                scores, usage = await self._score(
                    request.query,
                    checked,
                    deadline_seconds=request.deadline_seconds,
                    spread=spread,
                    pool=pool,
                    instruction=call_instruction,
                )
            else:
                # As few requests as possible: each one more is one more chance to fail again.
                scores, resumed = await score_the_gaps(
                    checked,
                    resume,
                    partial(
                        self._score,
                        request.query,
                        deadline_seconds=request.deadline_seconds,
                        spread=False,
                        instruction=call_instruction,
                    ),
                )
                usage = (resumed or Usage()).model_copy(update={"documents": len(checked)})
            return span.finished(
                RerankResult.build(
                    model=options.model,
                    documents=checked,
                    scores=scores,
                    top_k=top_k,
                    usage=usage,
                    provider=self._runner.provider.name,
                )
            )

    async def _score(
        self,
        query: str,
        documents: list[str],
        *,
        deadline_seconds: float | None,
        spread: bool = True,
        pool: PairPool | None = None,
        instruction: str | None = None,
    ) -> tuple[list[float], Usage]:
        """Scores of ``documents`` in order: one pass of the runner, or of the pair pool;
        with ``long_documents``, by their windows (``LongDocumentPolicy.score``).

        A failure carries what was scored as ``partial``.
        """
        score_texts = partial(
            self._score_once,
            query,
            deadline_seconds=deadline_seconds,
            spread=spread,
            pool=pool,
            instruction=instruction,
        )
        if self._long_documents is None:
            return await score_texts(documents, True)
        scores, usage = await self._long_documents.score(documents, score_texts)
        return scores, usage.model_copy(update={"documents": len(documents)})

    async def _score_once(
        self,
        query: str,
        documents: list[str],
        may_dedupe: bool,
        *,
        deadline_seconds: float | None,
        spread: bool,
        pool: PairPool | None,
        instruction: str | None,
    ) -> tuple[list[float], Usage]:
        """One pass of the runner (or of the pair pool) over ``documents``, and its cost;
        with a cache, over those it lacks."""
        if not documents:
            return [], Usage()
        send = partial(
            self._score_sent,
            query,
            may_dedupe=may_dedupe,
            deadline_seconds=deadline_seconds,
            spread=spread,
            pool=pool,
            instruction=instruction,
        )
        if self.cache is None:
            return await send(documents)
        return await self.cache.score(query, documents, instruction, send)

    async def _score_sent(
        self,
        query: str,
        documents: list[str],
        *,
        may_dedupe: bool,
        deadline_seconds: float | None,
        spread: bool,
        pool: PairPool | None,
        instruction: str | None,
    ) -> tuple[list[float], Usage]:
        """``documents`` sent: one pass of the runner or of the pair pool."""
        dedupe = may_dedupe and self._runner.options.limits.dedupe
        call = await CallState.for_documents(query, documents, dedupe_them=dedupe, spread=spread)
        call.instruction = instruction
        if pool is None:
            await self._runner.run_call(
                call, deadline_seconds=deadline_seconds, n_documents=len(documents), spread=spread
            )
        else:
            await self.packed.run_pooled_call(
                call, pool, deadline_seconds=deadline_seconds, n_documents=len(documents)
            )
        return call.caller_scores(), Usage(
            documents=len(documents),
            unique_documents=len(call.unique),
            batches=call.batches,
            requests=call.requests,
            retries=call.retries,
            hedges=call.hedges,
            input_tokens=call.input_tokens,
        )
