"""``RerankClient``: the public API, its lifecycle, and the assembly of each result.

The work is done elsewhere, one job per module: ``_config`` resolves and checks
the options, ``_engines`` builds the transport chain, ``_runner`` fans a call
out under the shared limiter (retries, splits, hedging), ``_many`` adapts it to
many requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import Literal, Self

import httpx

from ._call import CallState
from ._checks import check_encodable_in_slices, check_int
from ._config import (
    NOT_GIVEN,
    ClientOptions,
    HttpEngine,
    NotGiven,
    resolve_call,
    resolve_config,
)
from ._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_BUDGET_PER_SECOND,
    DEFAULT_RETRY_BUDGET_RATIO,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
)
from ._lifecycle import Lifecycle
from ._many import RequestLike, RerankOutcome, rerank_each
from ._models import RequestRecord, RerankResult, Usage
from ._pair_pool import PairPool
from ._partial import PartialScores
from ._resume import checked_resume, score_the_gaps
from ._retry import RetryPolicy
from ._runner import BatchRunner
from ._statistics import ClientStatistics
from ._tracing import rerank_span
from ._transports import open_transport
from .providers import Provider

__all__ = ["NOT_GIVEN", "ClientOptions", "HttpEngine", "NotGiven", "RerankClient"]


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
        min_batch_size: Fewest documents per request when a call is spread
            over idle concurrency slots; ``None`` for 8, or ``batch_size`` if
            that is smaller.
        max_concurrency: Most requests in flight for this client, across all
            calls; ``None`` for the provider's default (DeepInfra: 32).
        split: Split calls into batches. ``False`` sends each call as one
            request, for listwise models whose scores depend on the other
            documents in the request; a call over ``batch_size`` then fails
            with ``ValueError`` before any request.
        max_retries: Retries per batch after its first attempt; 0 disables.
        timeout: Per request: seconds, an ``httpx.Timeout``, or ``None`` for
            none. Defaults to 60 s (10 s to connect), or to ``http_client``'s
            own timeout when one is given. It bounds the whole attempt, body
            included (an ``httpx.Timeout`` by its ``read`` value): a body that
            trickles or never ends raises ``ResponseTimeoutError``.
        total_timeout: Seconds one call may take, retries and backoff
            included; ``None`` (the default) for no deadline.
        retry_initial_delay: Backoff ceiling after a first failure, seconds.
        retry_max_delay: Largest backoff ceiling, seconds.
        max_retry_after: Most seconds a server's ``Retry-After`` is obeyed.
        dedupe: Send identical documents of one call once.
        http_client: A caller-owned ``httpx.AsyncClient``; never closed here.
            Size its pool to at least ``max_concurrency`` connections.
        http_engine: ``"auto"`` (default): aiohttp on asyncio, at about a third
            of httpx's CPU per request, and httpx under trio or with
            ``http_client``. ``"httpx"`` or ``"aiohttp"`` (asyncio only) to
            choose; the behaviour is the same on both.
        hedge_after: Seconds after which a batch still unanswered is sent a
            second time, when a concurrency slot is free and the retry budget
            allows; the first answer wins. Cuts the tail on servers with rare,
            very slow requests. ``"auto"`` hedges at the rolling 95th percentile
            of answer latency; ``None`` (default) never hedges.
        adaptive_concurrency: Let the number of requests in flight follow the
            server: it backs off on 429, 503, timeouts and dropped connections
            and grows while requests succeed, never above ``max_concurrency``
            nor below 1 (docs/rate-limits.md). ``False`` keeps it fixed.
        max_requests_per_minute: Send at most this many requests per minute,
            paced evenly; ``None`` (default) for no limit.
        max_tokens_per_minute: Send at most this many tokens per minute, by the
            provider's estimate corrected from reported usage; ``None`` for none.
        retry_budget_ratio: Retries (and hedges) across the client are at most
            this share of its requests, plus ``retry_budget_per_second``; past
            that a batch fails at once with ``RetryBudgetExhaustedError``.
            ``None`` for no budget (only ``max_retries`` per batch).
        retry_budget_per_second: Retries allowed per second regardless of traffic.
        trust_env: Honour the environment like httpx: ``HTTP_PROXY``,
            ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case) choose
            the proxy, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` the certificates
            (certifi's bundle otherwise), on both engines alike. ``False`` reads
            none of them. A caller's ``http_client`` keeps its own setting.
        on_request: Called after every HTTP attempt with a ``RequestRecord``
            (latency, status, server runtime), for metrics and benchmarks.
            It runs on the event loop: keep it quick and never let it raise.

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
        min_batch_size: int | None = None,
        max_concurrency: int | None = None,
        split: bool = True,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        total_timeout: float | None = None,
        retry_initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY,
        retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        dedupe: bool = True,
        http_client: httpx.AsyncClient | None = None,
        http_engine: HttpEngine = "auto",
        on_request: Callable[[RequestRecord], None] | None = None,
        hedge_after: float | Literal["auto"] | None = None,
        adaptive_concurrency: bool = True,
        max_requests_per_minute: float | None = None,
        max_tokens_per_minute: float | None = None,
        retry_budget_ratio: float | None = DEFAULT_RETRY_BUDGET_RATIO,
        retry_budget_per_second: float = DEFAULT_RETRY_BUDGET_PER_SECOND,
        trust_env: bool = True,
    ) -> None:
        config = resolve_config(
            model=model,
            api_key=api_key,
            base_url=base_url,
            provider=provider,
            batch_size=batch_size,
            min_batch_size=min_batch_size,
            max_concurrency=max_concurrency,
            split=split,
            max_retries=max_retries,
            timeout=timeout,
            total_timeout=total_timeout,
            retry_initial_delay=retry_initial_delay,
            retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
            dedupe=dedupe,
            http_client=http_client,
            http_engine=http_engine,
            hedge_after=hedge_after,
            adaptive_concurrency=adaptive_concurrency,
            max_requests_per_minute=max_requests_per_minute,
            max_tokens_per_minute=max_tokens_per_minute,
            retry_budget_ratio=retry_budget_ratio,
            retry_budget_per_second=retry_budget_per_second,
            trust_env=trust_env,
        )
        self._provider = config.provider
        self._api_key = config.api_key
        self._transport = open_transport(config, on_request=on_request)
        # One limiter for every call of this client (see BatchRunner).
        self._runner = BatchRunner(
            config.options,
            provider=config.provider,
            sender=self._transport.sender,
        )
        # Open or closed, the process it belongs to, the calls that close() must end.
        self._lifecycle = Lifecycle(
            owner=type(self).__name__,
            describe=f"POST {config.options.url}, model {config.options.model}",
        )

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
        return self._lifecycle.is_closed

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of the state all calls share: slots, limits, budget, batches."""
        return self._runner.statistics()

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``: limits, backoff, and the sleep and jitter draw.

        The testing seam: ``RetryPolicy(sleep=recorder)`` makes backoff instant and
        observable, without real sleeps (see the README's "Testing" section).

        Raises:
            TypeError, ValueError: ``policy`` is not a valid ``RetryPolicy``.
        """
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"policy must be a RetryPolicy, not {type(policy).__name__}")
        check_int("policy.max_retries", policy.max_retries, minimum=0)
        self._runner.set_retry_policy(policy)

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
                the deadline passed (``APITimeoutError``). The other batches
                still finish, and ``error.partial`` holds every score obtained
                (``None`` elsewhere) and the failed ranges; an error that would
                fail every batch (401, 403, 404) cancels them instead.
            ClientClosedError: The client is closed, or was closed while the
                call ran or waited (``aclose()``), or is used in a forked process
                after sending from its parent.
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
        # --- OpenTelemetry hook (issue 13): one CLIENT span per call, from its Usage and
        # outcome; a shared no-op unless a tracer provider is configured (see _tracing.py).
        with rerank_span(
            provider=self._provider.name,
            model=self._runner.options.model,
            url=self._runner.options.url,
            documents=documents,
            top_k=top_k,
        ) as span:
            # --- lifecycle: aclose() ends the call with ClientClosedError (see _lifecycle)
            async with self._lifecycle.call():
                result = await self._rerank(
                    query,
                    documents,
                    top_k=top_k,
                    total_timeout=total_timeout,
                    resume=resume,
                    spread=spread,
                    pool=pool,
                )
            return span.finished(result)
        # --- end of the OpenTelemetry hook

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
            query, documents, dedupe_them=self._runner.options.dedupe, spread=spread
        )
        if pool is None:
            await self._runner.run_call(
                call, deadline_seconds=deadline_seconds, n_documents=len(documents), spread=spread
            )
        else:
            await self._runner.packed.run_pooled_call(
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
            ClientClosedError: The client is closed; or, from the block, it was
                closed while the block ran (the outcomes still running end with it).
        """
        self._ensure_open()
        if max_pending is None:
            max_pending = 4 * self._runner.options.max_concurrency
        check_int("max_pending", max_pending, minimum=1)
        options = self._runner.options
        if options.split and self._provider.packs_pairs(options.model):
            # One query per document on the wire: the requests share full batches.
            return self._lifecycle.guarded(
                rerank_each(
                    self._traced_rerank,
                    requests,
                    max_pending=max_pending,
                    fail_fast=fail_fast,
                    total_timeout=total_timeout,
                    pool=self._runner.packed.open_pool(),
                )
            )
        # Bulk work is planned for throughput: no call is spread over idle slots.
        return self._lifecycle.guarded(
            rerank_each(
                partial(self._traced_rerank, spread=False),
                requests,
                max_pending=max_pending,
                fail_fast=fail_fast,
                total_timeout=total_timeout,
            )
        )

    async def aclose(self) -> None:
        """Close the connections this client opened (never a caller's ``http_client``).

        Every call still running or waiting on the client ends with
        ``ClientClosedError`` within about a second; nothing is retried, hedged or
        reopened afterwards. Safe to call twice.
        """
        await self._lifecycle.close(self._transport.sender.aclose)

    async def __aenter__(self) -> Self:
        self._lifecycle.open()
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
        self._lifecycle.check()
