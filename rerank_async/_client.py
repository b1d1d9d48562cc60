"""``RerankClient``: the public API and its lifecycle.

The work is done elsewhere, one job per module: ``_config`` resolves and checks
the options, ``_transports`` builds the transport chain, ``_scorer`` takes a call
from its arguments to its result, ``_runner`` fans it out (``_attempts`` sends
each batch: flow control, the retry verdict, hedging), ``_many`` runs many calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, Self

import httpx

from ._config import (
    NOT_GIVEN,
    ClientOptions,
    EndpointArguments,
    HttpEngine,
    NotGiven,
    resolve_config,
)
from ._constants import DEFAULT_MAX_RETRIES
from ._fleet import Fleet, ScoreCache
from ._lifecycle import Lifecycle
from ._long_documents import LongDocuments
from ._many import RequestLike, RerankOutcome
from ._models import ClientStatistics, RequestRecord, RerankResult
from ._options import Limits, RetryPolicy
from ._partial import PartialScores
from ._runner import BatchRunner
from ._scorer import CallScorer
from .providers import Provider

__all__ = [
    "NOT_GIVEN",
    "ClientArguments",
    "ClientOptions",
    "HttpEngine",
    "NotGiven",
    "RerankClient",
]


class RerankClient:
    """An async reranking client: balanced batches, one concurrency bound, retries, ordered merge.

    Share one client between any number of tasks: every call's requests count against
    one ``max_concurrency``. Use it as ``async with RerankClient(...) as client:``.

    Args:
        model: Model name; default ``$RERANK_ASYNC_MODEL``, then the provider's.
        api_key: API key; ``None`` reads the provider's variables (DeepInfra:
            ``DEEPINFRA_TOKEN``, then ``DEEPINFRA_API_KEY``). Sent only as a header
            to the endpoint, redacted from every error and log record.
        base_url: Endpoint root; default ``$RERANK_ASYNC_BASE_URL``, then the
            provider's. No query string, fragment or credentials. A list: replicas.
        provider: A wire format's name (``"deepinfra"``) or a ``Provider``.
        batch_size: Most documents per request; ``None``: the provider's (DeepInfra 64).
        max_concurrency: Most requests in flight, across all calls; ``None``: the
            provider's (DeepInfra 32).
        max_retries: Retries per batch after its first attempt; 0 disables.
        timeout: Per request, the whole attempt with its body: seconds, an
            ``httpx.Timeout``, or ``None``. Default 60 s (10 s to connect), or
            ``http_client``'s own.
        total_timeout: Seconds one call may take, retries included; past it the call
            fails with ``DeadlineExceededError``, never retried. ``None``: no deadline.
        hedge_after: Seconds after which an unanswered batch is sent again when a
            slot is free and the retry budget allows; the first answer wins.
            ``"auto"``: at the rolling 90th percentile of latency. ``None``: never.
        http_client: A caller-owned ``httpx.AsyncClient`` (never closed here), or the
            engine to open connections with: ``"auto"`` (``None``) is aiohttp on
            asyncio and httpx under trio; or ``"httpx"``, ``"aiohttp"``.
        trust_env: Honour the proxy and TLS variables (``HTTP(S)_PROXY``,
            ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``), as httpx.
        limits: Request sizes, adaptive concurrency, rate limits (``Limits``).
        retry: Backoff, ``Retry-After`` and the retry budget (``RetryPolicy``).
        instruction: Every call's default instruction, in the provider's own field
            (docs/providers.md); a provider with none raises ``ValueError``.
        long_documents: Cut documents over a length, or score their overlapping
            windows and keep each one's best (``LongDocuments``); ``None``: as they are.
        fallback, cache: Client(s) to score a failed call whole; a ``ScoreCache`` (docs/fleet.md).

    Raises:
        ValueError, TypeError: An option is out of range or of the wrong type; the
            message names it.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | Sequence[str] | None = None,
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
        instruction: str | None = None,
        long_documents: LongDocuments | None = None,
        fallback: RerankClient | Sequence[RerankClient] | None = None,
        cache: ScoreCache | None = None,
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
            instruction=instruction,
            long_documents=long_documents,
        )
        self._api_key = config.api_key
        self._fleet = Fleet.open(config, fallbacks=_checked_fallbacks(fallback), cache=cache)
        # One limiter for every call of this client (see BatchRunner).
        self._runner = BatchRunner(
            config.options,
            provider=config.provider,
            sender=self._fleet.transport.sender,
        )
        self._scorer = CallScorer(self._runner, config.long_documents, fleet=self._fleet)
        self._on_request: Callable[[RequestRecord], None] | None = None
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
        return self._runner.provider

    @property
    def http_engine(self) -> str:
        """``"aiohttp"`` or ``"httpx"``; ``"auto"`` until the first request chooses."""
        return self._fleet.transport.engine_name

    @property
    def batch_limit(self) -> int:
        """Most documents per request now: ``batch_size``, or less once a server said so."""
        return self._runner.batch_limit

    @property
    def is_closed(self) -> bool:
        """Whether ``aclose()`` has been called."""
        return self._lifecycle.is_closed

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of what all calls share: slots, limits, replicas, cache hits."""
        return self._fleet.statistics(self._runner.statistics())

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``; the testing seam (``RetryPolicy(sleep=...)``).

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
        self._runner.use_sender(self._fleet.transport.observed(hook))

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        resume: PartialScores | None = None,
        instruction: str | NotGiven | None = NOT_GIVEN,
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
            instruction: This call's instruction, in the provider's own field;
                ``None`` for none; the client's when left out.

        Returns:
            The scores in input order and the ranked documents.

        Raises:
            TypeError, ValueError: Bad input, before any request is sent.
            RerankError: A batch failed for good, or the deadline passed
                (``DeadlineExceededError``); ``error.partial`` holds every score
                obtained. A 401, 403 or 404 cancels the other batches at once.
            ClientClosedError: The client is closed, or was closed during the call.
        """
        # aclose() ends the call with ClientClosedError (see _lifecycle).
        async with self._lifecycle.call():
            return await self._scorer.rerank(
                query,
                documents,
                top_k=top_k,
                total_timeout=total_timeout,
                resume=resume,
                instruction=instruction,
            )

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        instruction: str | NotGiven | None = NOT_GIVEN,
    ) -> list[float]:
        """Scores only, ``scores[i]`` for ``documents[i]``; see ``rerank``."""
        result = await self.rerank(
            query, documents, total_timeout=total_timeout, instruction=instruction
        )
        return result.scores

    def rerank_many(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        *,
        max_pending: int | None = None,
        fail_fast: bool = False,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AbstractAsyncContextManager[AsyncIterator[RerankOutcome]]:
        """Rerank many requests concurrently; outcomes arrive as they complete::

            async with client.rerank_many(requests) as outcomes:
                async for outcome in outcomes:
                    ...

        All requests share ``max_concurrency``, free slots going round-robin across
        them. The input is read lazily, at most ``max_pending`` requests held, so
        memory stays flat. Leaving the block early cancels what is still running.

        Args:
            requests: ``RerankRequest`` items or ``(query, documents)`` tuples, as
                an iterable or an async iterable.
            max_pending: Requests held at once; default ``4 * max_concurrency``.
            fail_fast: Raise the first failure from the block instead of handing
                out an outcome that carries it.
            total_timeout: Deadline per request, never extended by the automatic
                resume; the client's when left out.

        Raises:
            ValueError: ``max_pending`` < 1.
            ClientClosedError: The client is closed; or, from the block, it was
                closed while the block ran (the outcomes still running end with it).
        """
        self._ensure_open()
        return self._lifecycle.guarded(
            self._scorer.rerank_many(
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
        await self._lifecycle.close(self._fleet.aclose)

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
            f"RerankClient(model={options.model!r}, base_url={options.shown_base_url!r}, "
            f"provider={self.provider.name!r}, batch_size={options.batch_size}, "
            f"max_concurrency={options.max_concurrency}, api_key={key})"
        )

    def _ensure_open(self) -> None:
        self._lifecycle.check()


class ClientArguments(EndpointArguments, total=False):
    """``RerankClient``'s keyword arguments, for wrappers that pass them through.

    ``SyncRerankClient``, the framework adapters, the CLI and Ray take
    ``**Unpack[ClientArguments]`` instead of re-typing the list; a test checks that
    its keys are exactly ``RerankClient``'s parameters.
    """

    fallback: RerankClient | Sequence[RerankClient] | None
    cache: ScoreCache | None


def _checked_fallbacks(
    fallback: RerankClient | Sequence[RerankClient] | None,
) -> list[RerankClient]:
    """``fallback=`` as a list of clients (a caller's: never closed here)."""
    if fallback is None:
        return []
    clients = [fallback] if isinstance(fallback, RerankClient) else list(fallback)
    for index, client in enumerate(clients):
        if not isinstance(client, RerankClient):
            raise TypeError(
                f"fallback[{index}] must be a RerankClient, not {type(client).__name__}"
            )
    return clients
