"""``RerankClient``: the public API, its lifecycle, and the assembly of each result.

The work is done elsewhere, one job per module: ``_config`` resolves and checks
the options, ``_engines`` builds the transport chain, ``_runner`` fans a call
out under the shared limiter (retries, splits, hedging), ``_many`` adapts it to
many requests.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import Literal, Self

import httpx

from ._call import CallState
from ._checks import check_int
from ._config import (
    NOT_GIVEN,
    ClientOptions,
    HttpEngine,
    NotGiven,
    resolve_call,
    resolve_call_timeout,
    resolve_config,
)
from ._constants import DEFAULT_MAX_RETRIES
from ._encodable import check_encodable_in_slices
from ._many import RequestLike, RerankOutcome, rerank_each
from ._models import RequestRecord, RerankResult, Usage
from ._options import Limits, RetryPolicy
from ._packed import PackedRequests, PairPool
from ._partial import PartialScores
from ._resume import checked_resume, score_the_gaps
from ._runner import BatchRunner
from ._statistics import ClientStatistics
from ._tracing import rerank_span
from ._transports import open_transport
from .providers import Provider

__all__ = ["NOT_GIVEN", "ClientOptions", "HttpEngine", "NotGiven", "RerankClient"]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class RerankClient:
    """An async reranking client: balanced batches, one concurrency bound, retries, ordered merge.

    One client is safe to share between any number of concurrent tasks: every
    call's requests count against the same ``max_concurrency``.

    Use it as ``async with RerankClient(...) as client:``, or call
    ``await client.aclose()`` when done.

    Args:
        model: Model name; defaults to ``$RERANK_ASYNC_MODEL``, then the
            provider's default (DeepInfra: ``cross-encoder/ms-marco-MiniLM-L-12-v2``;
            most other providers have none and require it).
        api_key: API key; ``None`` reads the provider's environment variables
            (DeepInfra: ``DEEPINFRA_TOKEN``, then ``DEEPINFRA_API_KEY``). Sent
            only as a request header to the configured endpoint, and redacted
            from every error and log record. Whitespace around it, control or
            non-ASCII characters raise ``ValueError`` (without the key).
        base_url: Endpoint root; defaults to ``$RERANK_ASYNC_BASE_URL``, then
            the provider's (``https://api.deepinfra.com/v1/inference``). No
            query string, fragment or credentials.
        provider: A wire format's name (``"deepinfra"``) or a ``Provider``.
        batch_size: Most documents per request; ``None`` for the provider's
            default (DeepInfra: 64).
        max_concurrency: Most requests in flight for this client, across all
            calls; ``None`` for the provider's default (DeepInfra: 32).
        max_retries: Retries per batch after its first attempt; 0 disables.
        timeout: Per request: seconds, an ``httpx.Timeout``, or ``None`` for
            none. Defaults to 60 s (10 s to connect), or to ``http_client``'s
            own timeout when one is given. It bounds the whole attempt, body
            included (an ``httpx.Timeout`` by its ``read`` value).
        total_timeout: Seconds one call may take, retries and backoff
            included; ``None`` (the default) for no deadline. When it passes the
            call fails with ``DeadlineExceededError``, never retried or resumed.
        hedge_after: Seconds after which a batch still unanswered is sent a
            second time, when a slot is free and the retry budget allows; the
            first answer wins. ``"auto"`` hedges at the rolling 90th percentile
            of answer latency; ``None`` (default) never hedges.
        http_client: A caller-owned ``httpx.AsyncClient`` (never closed here;
            size its pool to at least ``max_concurrency``), or the engine this
            client opens its own connections with: ``"auto"`` (``None``, the
            default) is aiohttp on asyncio, at about a third of httpx's CPU per
            request, and httpx under trio; ``"httpx"`` or ``"aiohttp"`` to choose.
        trust_env: Honour ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``,
            ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, as httpx does.
        limits: Request sizes, adaptive concurrency and rate limits
            (``rerank_async.Limits``).
        retry: Backoff, ``Retry-After`` and the retry budget
            (``rerank_async.RetryPolicy``).

    Raises:
        ValueError: An option is out of range; the message names it.
        TypeError: An option has the wrong type.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        provider: str | Provider = "deepinfra",
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        total_timeout: float | None = None,
        hedge_after: float | Literal["auto"] | None = None,
        http_client: httpx.AsyncClient | HttpEngine | None = None,
        trust_env: bool = True,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        config = resolve_config(
            model=model,
            api_key=api_key,
            base_url=base_url,
            provider=provider,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            total_timeout=total_timeout,
            hedge_after=hedge_after,
            http_client=http_client,
            trust_env=trust_env,
            limits=limits,
            retry=retry,
        )
        self._provider = config.provider
        self._api_key = config.api_key
        self._transport = open_transport(config)
        # One limiter for every call of this client (see BatchRunner).
        self._runner = BatchRunner(
            config.options,
            provider=config.provider,
            sender=self._transport.sender,
        )
        # rerank_many's packed requests, for wire formats with one query per document.
        self._packed = PackedRequests(self._runner)
        self._on_request: Callable[[RequestRecord], None] | None = None
        self._state = _State.UNOPENED

    # -- public API ---------------------------------------------------------------------------

    @property
    def options(self) -> ClientOptions:
        """The resolved options (the API key is not among them)."""
        return self._runner.options

    @property
    def model(self) -> str:
        """The model this client scores with."""
        return self._runner.options.model

    @property
    def provider(self) -> Provider:
        """The wire format in use."""
        return self._provider

    @property
    def http_engine(self) -> str:
        """The engine sending requests: ``"aiohttp"`` or ``"httpx"``.

        ``"auto"`` until the first request, when the choice is made by the
        running async library (aiohttp on asyncio, httpx otherwise).
        """
        return self._transport.engine_name

    @property
    def batch_limit(self) -> int:
        """Most documents per request now: ``batch_size``, or less once a server said so."""
        return self._runner.batch_limit

    @property
    def is_closed(self) -> bool:
        """Whether ``aclose()`` has been called."""
        return self._state is _State.CLOSED

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of the state all calls share: slots, limits, budget, batches."""
        return self._runner.statistics()

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``: backoff, budget, and the sleep and jitter draw.

        The testing seam: ``RetryPolicy(sleep=recorder)`` makes backoff instant and
        observable, without real sleeps (see the README's "Testing" section).

        Raises:
            TypeError: ``policy`` is not a ``RetryPolicy``.
        """
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"policy must be a RetryPolicy, not {type(policy).__name__}")
        self._runner.set_retry_policy(policy)

    @property
    def on_request(self) -> Callable[[RequestRecord], None] | None:
        """Called after every HTTP attempt with a ``RequestRecord``, or ``None``.

        Set it like httpx's ``client.event_hooks``: ``client.on_request = record``,
        for metrics and benchmarks. It runs on the event loop: keep it quick and
        never let it raise.
        """
        return self._on_request

    @on_request.setter
    def on_request(self, hook: Callable[[RequestRecord], None] | None) -> None:
        if hook is not None and not callable(hook):
            raise TypeError(f"on_request must be callable or None, not {type(hook).__name__}")
        self._on_request = hook
        self._runner.use_sender(self._transport.observed(hook))

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        resume: PartialScores | None = None,
    ) -> RerankResult:
        """Score every document against ``query`` and rank them.

        Args:
            query: The search query; must not be blank.
            documents: Candidate texts. Scores come back in this order.
            top_k: Keep only the best ``top_k`` in ``results`` (``scores``
                always has every document).
            total_timeout: Deadline for this call in seconds, retries
                included; ``None`` for none; the client's when left out.
            resume: The ``partial`` of a failed call's error on the same
                ``documents``: only the documents it has no score for are
                sent, in as few requests as ``batch_size`` allows.

        Returns:
            The scores in input order and the ranked documents.

        Raises:
            TypeError, ValueError: Bad input, before any request is sent.
            RerankError: A batch failed for good (its subclass says how), or
                the deadline passed (``DeadlineExceededError``). The other batches
                still finish, and ``error.partial`` holds every score obtained
                (``None`` elsewhere) and the failed ranges; an error that would
                fail every batch (401, 403, 404) cancels them instead.
            RuntimeError: The client is closed.
        """
        return await self._traced_rerank(
            query, documents, top_k=top_k, total_timeout=total_timeout, resume=resume
        )

    async def _traced_rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        resume: PartialScores | None = None,
        spread: bool = True,
        pool: PairPool | None = None,
    ) -> RerankResult:
        """``rerank`` with its planning options; ``rerank_many`` calls it for each request."""
        # One CLIENT span per call, from its Usage and outcome; a shared no-op unless a
        # tracer provider is configured (see _tracing.py).
        with rerank_span(
            provider=self._provider.name,
            model=self._runner.options.model,
            url=self._runner.options.url,
            documents=documents,
            top_k=top_k,
        ) as span:
            return span.finished(
                await self._rerank(
                    query,
                    documents,
                    top_k=top_k,
                    total_timeout=total_timeout,
                    resume=resume,
                    spread=spread,
                    pool=pool,
                )
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
    ) -> RerankResult:
        """``rerank`` without its span: one pass of the runner, or of the pair pool."""
        self._ensure_open()
        options = self._runner.options
        request = resolve_call(options, query, documents, top_k=top_k, total_timeout=total_timeout)
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
                ),
            )
            usage = (resumed or Usage()).model_copy(update={"documents": len(checked)})
        return RerankResult.build(
            model=options.model, documents=checked, scores=scores, top_k=top_k, usage=usage
        )

    async def _score(
        self,
        query: str,
        documents: list[str],
        *,
        deadline_seconds: float | None,
        spread: bool = True,
        pool: PairPool | None = None,
    ) -> tuple[list[float], Usage]:
        """Scores of ``documents`` in order: one pass of the runner, or of the pair pool.

        A failure carries what was scored as ``partial``.
        """
        if not documents:
            return [], Usage()
        call = await CallState.for_documents(
            query, documents, dedupe_them=self._runner.options.limits.dedupe, spread=spread
        )
        if pool is None:
            await self._runner.run_call(
                call, deadline_seconds=deadline_seconds, n_documents=len(documents), spread=spread
            )
        else:
            await self._packed.run_pooled_call(
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

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[float]:
        """Scores only, ``scores[i]`` for ``documents[i]``; see ``rerank``."""
        result = await self.rerank(query, documents, total_timeout=total_timeout)
        return result.scores

    def rerank_many(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        *,
        max_pending: int | None = None,
        fail_fast: bool = False,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AbstractAsyncContextManager[AsyncIterator[RerankOutcome]]:
        """Rerank many requests concurrently; outcomes arrive as they complete.

        All requests share this client's ``max_concurrency``, and free slots go
        round-robin across requests, so a 3-document query never waits behind
        every batch of a 10,000-document one. The input is read lazily: at most
        ``max_pending`` requests are held (read, or finished but not yet taken by
        the consumer), so memory stays flat however large the input is::

            async with client.rerank_many(requests) as outcomes:
                async for outcome in outcomes:
                    if outcome.ok:
                        use(outcome.id, outcome.result)

        Leaving the block early cancels the requests still running.

        Args:
            requests: ``RerankRequest`` items or ``(query, documents)`` tuples, as
                an iterable or an async iterable.
            max_pending: Requests held at once; default four times
                ``max_concurrency``, enough to keep every slot busy.
            fail_fast: Raise the first request's failure from the block instead
                of handing out an outcome that carries it.
            total_timeout: Deadline per request; the client's when left out.

        Returns:
            An async context manager that gives an async iterator of
            ``RerankOutcome``.

        Raises:
            ValueError: ``max_pending`` < 1.
            RuntimeError: The client is closed.
        """
        self._ensure_open()
        options = self._runner.options
        if max_pending is None:
            max_pending = 4 * options.max_concurrency
        check_int("max_pending", max_pending, minimum=1)
        deadline_seconds = resolve_call_timeout(options.total_timeout, total_timeout)
        if options.limits.split and self._provider.packs_pairs(options.model):
            # One query per document on the wire: the requests share full batches.
            pool = self._packed.open_pool()
            return rerank_each(
                partial(self._traced_rerank, pool=pool),
                requests,
                max_pending=max_pending,
                fail_fast=fail_fast,
                deadline_seconds=deadline_seconds,
                beside=pool.run,
            )
        # Bulk work is planned for throughput: no call is spread over idle slots.
        return rerank_each(
            partial(self._traced_rerank, spread=False),
            requests,
            max_pending=max_pending,
            fail_fast=fail_fast,
            deadline_seconds=deadline_seconds,
        )

    async def aclose(self) -> None:
        """Close the connections this client opened (never a caller's ``http_client``).

        Safe to call twice.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._transport.sender.aclose()

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RuntimeError("cannot reopen a closed RerankClient; create a new one")
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        options = self._runner.options
        key = "'***'" if self._api_key else "None"
        return (
            f"RerankClient(model={options.model!r}, base_url={options.base_url!r}, "
            f"provider={self._provider.name!r}, batch_size={options.batch_size}, "
            f"max_concurrency={options.max_concurrency}, api_key={key})"
        )

    def _ensure_open(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("RerankClient is closed; create a new client")
