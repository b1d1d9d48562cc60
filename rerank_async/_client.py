"""``RerankClient``: options, lifecycle, and the fan-out of a call under one shared limiter."""

from __future__ import annotations

import enum
import logging
import math
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Final, Literal, Self, TypeAlias

import anyio
import httpx
from anyio.abc import TaskGroup

from ._batching import ScoreSlots, dedupe, fan_out, plan_batches, split_by_budget
from ._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_MIN_BATCH_SIZE,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_MODEL,
    LOGGER_NAME,
    MAX_SPREAD_FACTOR,
)
from ._encodable import check_encodable, check_encodable_in_slices
from ._exceptions import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    RerankError,
)
from ._limiter import FairLimiter
from ._many import RequestLike, RerankOutcome, RerankRequest, run_many
from ._models import RequestRecord, RerankResult, Usage
from ._partial import PartialScores
from ._resume import checked_resume, score_the_gaps
from ._retry import RetryEvent, RetryPolicy, call_with_retries, is_retryable
from ._secrets import check_api_key
from ._transport import BatchRequest, Endpoint, HttpxTransport, TimeoutTypes, Transport
from ._urls import check_base_url
from ._version import __version__
from .providers import BatchScores, Provider, resolve_provider

__all__ = ["NOT_GIVEN", "HttpEngine", "NotGiven", "RerankClient"]

HttpEngine: TypeAlias = Literal["httpx", "aiohttp"]

logger = logging.getLogger(LOGGER_NAME)


class NotGiven(enum.Enum):
    """Marks an argument the caller left out, where ``None`` has a meaning of its own."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """A client's options after precedence (argument > environment > default) and checks."""

    model: str
    base_url: str
    url: str
    batch_size: int
    min_batch_size: int
    max_concurrency: int
    split: bool
    total_timeout: float | None
    hedge_after: float | None
    dedupe: bool
    retry: RetryPolicy


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
            only as a request header to the configured endpoint.
        base_url: Endpoint root; defaults to ``$RERANK_ASYNC_BASE_URL``, then
            the provider's (``https://api.deepinfra.com/v1/inference``).
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
            own timeout when one is given.
        total_timeout: Seconds one call may take, retries and backoff
            included; ``None`` (the default) for no deadline.
        retry_initial_delay: Backoff ceiling after a first failure, seconds.
        retry_max_delay: Largest backoff ceiling, seconds.
        max_retry_after: Most seconds a server's ``Retry-After`` is obeyed.
        dedupe: Send identical documents of one call once.
        http_client: A caller-owned ``httpx.AsyncClient``; never closed here.
            Size its pool to at least ``max_concurrency`` connections.
        http_engine: ``"httpx"`` (default; any anyio backend) or ``"aiohttp"``
            (asyncio only, extra ``aiohttp``): the same behaviour at about a
            third of the CPU per request, for high-throughput bulk work.
        hedge_after: Seconds after which a batch still unanswered is sent a
            second time, when a concurrency slot is free; the first answer wins.
            Cuts the tail on servers with rare, very slow requests; ``None``
            (default) never hedges.
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
        http_engine: HttpEngine = "httpx",
        on_request: Callable[[RequestRecord], None] | None = None,
        hedge_after: float | None = None,
    ) -> None:
        self._provider = resolve_provider(provider)
        if batch_size is None:
            batch_size = self._provider.default_batch_size
        if max_concurrency is None:
            max_concurrency = self._provider.default_max_concurrency
        _check_int("batch_size", batch_size, minimum=1)
        if min_batch_size is None:
            min_batch_size = min(DEFAULT_MIN_BATCH_SIZE, batch_size)
        _check_int("min_batch_size", min_batch_size, minimum=1)
        _check_int("max_concurrency", max_concurrency, minimum=1)
        _check_int("max_retries", max_retries, minimum=0)
        if min_batch_size > batch_size:
            raise ValueError(
                f"min_batch_size ({min_batch_size}) must not exceed batch_size ({batch_size})"
            )
        for name, seconds in (
            ("retry_initial_delay", retry_initial_delay),
            ("retry_max_delay", retry_max_delay),
            ("max_retry_after", max_retry_after),
        ):
            _check_seconds(name, seconds, allow_zero=True)
        if total_timeout is not None:
            _check_seconds("total_timeout", total_timeout, allow_zero=False)
        if hedge_after is not None:
            _check_seconds("hedge_after", hedge_after, allow_zero=False)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError(
                f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
            )

        chosen_model = model or os.environ.get(ENV_MODEL) or self._provider.default_model
        if chosen_model is None:
            raise ValueError(
                f"model is required with provider {self._provider.name!r}, which has no default "
                f"model; pass model= or set {ENV_MODEL}"
            )
        resolved_model = _non_empty("model", chosen_model)
        resolved_base_url = _checked_base_url(
            base_url or os.environ.get(ENV_BASE_URL) or self._provider.default_base_url
        )
        self._api_key = _resolve_api_key(api_key, self._provider.api_key_env_vars)
        self._options = ClientOptions(
            model=resolved_model,
            base_url=resolved_base_url,
            url=self._provider.url(resolved_base_url, resolved_model),
            batch_size=batch_size,
            min_batch_size=min_batch_size,
            max_concurrency=max_concurrency,
            split=split,
            total_timeout=total_timeout,
            hedge_after=hedge_after,
            dedupe=dedupe,
            retry=RetryPolicy(
                max_retries=max_retries,
                initial_delay=retry_initial_delay,
                max_delay=retry_max_delay,
                max_retry_after=max_retry_after,
            ),
        )

        if http_engine not in ("httpx", "aiohttp"):
            raise ValueError(f"http_engine must be 'httpx' or 'aiohttp', not {http_engine!r}")
        if http_engine == "aiohttp" and http_client is not None:
            raise ValueError(
                "http_client is an httpx client; it cannot be used with http_engine='aiohttp'"
            )
        self._transport = self._make_transport(
            http_engine=http_engine,
            http_client=http_client,
            timeout=timeout,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"rerank-async/{__version__}",
                **self._provider.auth_headers(self._api_key),
            },
        )
        # One limiter for every call of this client: max_concurrency bounds
        # HTTP attempts in flight, not calls, and backoff sleeps hold no slot.
        # Free slots go round-robin across calls, so a small call never waits
        # behind every batch of a big one.
        self._limiter = FairLimiter(max_concurrency)
        # Batches planned or running and not yet finished, across calls; a new
        # call spreads itself only over slots this demand leaves free.
        self._outstanding_batches = 0
        # Lowered when the server says a batch is too large; calls plan with it.
        self._batch_limit = batch_size
        self._on_request = on_request
        self._state = _State.UNOPENED

    def _make_transport(
        self,
        *,
        http_engine: HttpEngine,
        http_client: httpx.AsyncClient | None,
        timeout: float | httpx.Timeout | NotGiven | None,
        headers: dict[str, str],
    ) -> Transport:
        options = self._options
        endpoint = Endpoint(
            provider=self._provider,
            url=options.url,
            model=options.model,
            headers=headers,
            api_key=self._api_key,
        )
        default_timeout = httpx.Timeout(DEFAULT_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT)
        if http_engine == "aiohttp":
            from ._aiohttp_transport import AiohttpTransport  # the optional extra

            return AiohttpTransport(
                endpoint,
                max_connections=options.max_concurrency,
                timeout=default_timeout
                if isinstance(timeout, NotGiven)
                else _checked_timeout(timeout),
            )
        request_timeout: TimeoutTypes
        if isinstance(timeout, NotGiven):
            # A caller's client keeps its own timeout unless one is given here.
            request_timeout = (
                httpx.USE_CLIENT_DEFAULT if http_client is not None else default_timeout
            )
        else:
            request_timeout = _checked_timeout(timeout)
        own_client = http_client is None
        client = http_client or httpx.AsyncClient(
            # The limiter already bounds requests in flight, so a pool of the same
            # size never makes a request wait for a connection (no PoolTimeout).
            limits=httpx.Limits(
                max_connections=options.max_concurrency,
                max_keepalive_connections=options.max_concurrency,
            ),
            timeout=default_timeout,
            follow_redirects=False,
        )
        return HttpxTransport(
            endpoint, http_client=client, owns_client=own_client, timeout=request_timeout
        )

    # -- public API ---------------------------------------------------------------------------

    @property
    def options(self) -> ClientOptions:
        """The resolved options (the API key is not among them)."""
        return self._options

    @property
    def model(self) -> str:
        """The model this client scores with."""
        return self._options.model

    @property
    def provider(self) -> Provider:
        """The wire format in use."""
        return self._provider

    @property
    def batch_limit(self) -> int:
        """Most documents per request now: ``batch_size``, or less once a server said so."""
        return self._batch_limit

    @property
    def is_closed(self) -> bool:
        """Whether ``aclose()`` has been called."""
        return self._state is _State.CLOSED

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
            RuntimeError: The client is closed.
        """
        self._ensure_open()
        checked = _checked_documents(documents)
        _checked_query(query)
        check_encodable(query, name="query")
        if top_k is not None:
            _check_int("top_k", top_k, minimum=1)
        deadline_seconds = (
            self._options.total_timeout
            if isinstance(total_timeout, NotGiven)
            else (
                None
                if total_timeout is None
                else _check_seconds("total_timeout", total_timeout, allow_zero=False)
            )
        )
        if not self._options.split and len(checked) > self._options.batch_size:
            raise ValueError(
                f"split=False sends one request per call, but {len(checked)} documents exceed "
                f"batch_size={self._options.batch_size}"
            )
        resume = checked_resume(resume, len(checked))
        await check_encodable_in_slices(checked)
        if resume is None:
            scores, usage = await self._score_documents(
                query, checked, deadline_seconds=deadline_seconds
            )
        else:
            # As few requests as possible: each one more is one more chance to fail again.
            scores, resumed = await score_the_gaps(
                checked,
                resume,
                partial(
                    self._score_documents, query, deadline_seconds=deadline_seconds, spread=False
                ),
            )
            usage = (resumed or Usage()).model_copy(update={"documents": len(checked)})
        return RerankResult.build(
            model=self._options.model, documents=checked, scores=scores, top_k=top_k, usage=usage
        )

    async def _score_documents(
        self,
        query: str,
        checked: list[str],
        *,
        deadline_seconds: float | None,
        spread: bool = True,
    ) -> tuple[list[float], Usage]:
        """Scores of ``checked`` in order; a failure carries what was scored as ``partial``."""
        model = self._options.model
        if not checked:
            return [], Usage()
        unique: list[str] = checked
        positions: list[int] | None = None
        if self._options.dedupe:
            deduped, slots = dedupe(checked)
            if len(deduped) < len(checked):  # without duplicates, skip the fan-out copy
                unique, positions = deduped, slots
        call = _Call(query=query, unique=unique, positions=positions, spread=spread)
        with anyio.move_on_after(deadline_seconds) as deadline_scope:
            call.deadline = deadline_scope.deadline
            await self._score_call(call)
        failure: RerankError | None = None
        if call.error is not None:
            if not isinstance(call.error, RerankError):
                raise call.error
            failure = call.error
        elif deadline_scope.cancelled_caught:
            scored = call.documents_scored()
            failure = APITimeoutError(
                f"total_timeout of {deadline_seconds} s passed with {scored} of "
                f"{len(checked)} documents scored [POST {self._options.url}, model {model}]",
                url=self._options.url,
                model=model,
                documents_scored=scored,
            )
        if failure is not None:
            kept = call.slots.snapshot()
            failure.partial = PartialScores.from_scores(
                kept if positions is None else fan_out(kept, positions)
            )
            raise failure

        unique_scores = call.slots.complete()
        scores = unique_scores if positions is None else fan_out(unique_scores, positions)
        return scores, Usage(
            documents=len(checked),
            unique_documents=len(unique),
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
        if max_pending is None:
            max_pending = 4 * self._options.max_concurrency
        _check_int("max_pending", max_pending, minimum=1)

        async def rerank_one(request: RerankRequest) -> RerankResult:
            try:
                return await self.rerank(
                    request.query,
                    request.documents,
                    top_k=request.top_k,
                    total_timeout=total_timeout,
                )
            except RerankError as error:
                # Before giving up, send once more only what has no score yet; an
                # error that retrying cannot fix (401, 404, 400, too large) is final.
                if error.partial is None or not is_retryable(error):
                    raise
                return await self.rerank(
                    request.query,
                    request.documents,
                    top_k=request.top_k,
                    total_timeout=total_timeout,
                    resume=error.partial,
                )

        return run_many(rerank_one, requests, max_pending=max_pending, fail_fast=fail_fast)

    async def aclose(self) -> None:
        """Close the connections this client opened (never a caller's ``http_client``).

        Safe to call twice.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._transport.aclose()

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
        options = self._options
        key = "'***'" if self._api_key else "None"
        return (
            f"RerankClient(model={options.model!r}, base_url={options.base_url!r}, "
            f"provider={self._provider.name!r}, batch_size={options.batch_size}, "
            f"max_concurrency={options.max_concurrency}, api_key={key})"
        )

    # -- fan-out ------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("RerankClient is closed; create a new client")

    async def _score_call(self, call: _Call) -> None:
        """Run every batch of ``call``; the first failure cancels the rest.

        Each task catches its own error, so the task group never raises an
        ``ExceptionGroup``; the caller raises ``call.error`` afterwards.
        """
        spans = self._plan(call)
        async with anyio.create_task_group() as task_group:
            call.task_group = task_group
            for start, stop in spans[1:]:
                self._start_batch(call, start, stop)
            # The first batch runs in this task: a one-batch call spawns no task at all.
            call.batches += 1
            self._outstanding_batches += 1
            await self._run_batch(call, *spans[0])

    def _plan(self, call: _Call) -> list[tuple[int, int]]:
        """Spans of ``call.unique`` to send: by count, then by the provider's token budget."""
        n_documents = len(call.unique)
        if not self._options.split:
            return [(0, n_documents)]
        limit = self._batch_limit
        free_slots = max(1, self._options.max_concurrency - self._outstanding_batches)
        spans = plan_batches(
            n_documents,
            batch_size=limit,
            min_batch_size=min(self._options.min_batch_size, limit),
            # A resumed call goes in as few requests as possible: each one more
            # is one more chance to fail again.
            free_slots=free_slots if call.spread else 1,
            max_spread=MAX_SPREAD_FACTOR,
        )
        budget = self._provider.max_tokens_per_request(self._options.model)
        if budget is None:
            return spans
        estimate = self._provider.estimate_tokens
        query_tokens = estimate(call.query)
        costs = [query_tokens + estimate(document) for document in call.unique]
        return split_by_budget(spans, costs, budget)

    def _start_batch(self, call: _Call, start: int, stop: int) -> None:
        call.batches += 1
        self._outstanding_batches += 1
        call.task_group.start_soon(self._run_batch, call, start, stop)

    async def _run_batch(self, call: _Call, start: int, stop: int) -> None:
        try:
            await self._score_batch(call, start, stop)
        except Exception as error:  # recorded, re-raised by rerank()
            call.fail(error)
        finally:
            self._outstanding_batches -= 1

    async def _score_batch(self, call: _Call, start: int, stop: int) -> None:
        batch = BatchRequest(
            body=self._provider.encode_request(
                self._options.model, call.query, call.unique[start:stop]
            ),
            n_documents=stop - start,
            document_range=call.document_range(start, stop),
        )
        try:
            result = await call_with_retries(
                partial(self._attempt, call, batch),
                self._options.retry,
                deadline=call.deadline,
                on_retry=partial(self._log_retry, call, batch),
            )
        except APIStatusError as error:
            size = stop - start
            if (
                size < 2
                or not self._options.split
                or not self._provider.is_batch_too_large(error.status_code, error.server_message)
            ):
                raise
            self._split_batch(call, start, stop, error)
            return
        call.record(start, result)

    async def _attempt(self, call: _Call, batch: BatchRequest) -> BatchScores:
        async with self._limiter.slot(call):
            call.requests += 1
            if self._options.hedge_after is None:
                return await self._send(batch)
            return await self._send_hedged(call, batch, self._options.hedge_after)

    async def _send(self, batch: BatchRequest) -> BatchScores:
        if self._on_request is None:
            return await self._transport.send(batch)
        return await self._send_observed(batch, self._on_request)

    async def _send_hedged(
        self, call: _Call, batch: BatchRequest, hedge_after: float
    ) -> BatchScores:
        """Send, and if no answer came within ``hedge_after`` s, race a second copy.

        A heavy-tailed server keeps a few requests far longer than the rest, and a
        call waits for its slowest batch. The copy goes out only when a slot is free
        right now (``try_acquire``), so hedging never exceeds ``max_concurrency`` nor
        delays another call's batch. The first answer wins and the other request is
        cancelled; only when both fail does the attempt fail, with the first error.
        """
        answers: list[BatchScores] = []
        failures: list[Exception] = []
        running = 0
        settled = anyio.Event()

        async def race(holds_extra_slot: bool) -> None:
            nonlocal running
            try:
                answers.append(await self._send(batch))
                settled.set()
            except Exception as error:  # kept, raised below if no copy succeeds
                failures.append(error)
            finally:
                running -= 1
                if holds_extra_slot:
                    self._limiter.release()
                if running == 0:
                    settled.set()

        async with anyio.create_task_group() as racers:
            running = 1
            racers.start_soon(race, False)
            with anyio.move_on_after(hedge_after):
                await settled.wait()
            if not settled.is_set() and self._limiter.try_acquire():
                call.requests += 1
                call.hedges += 1
                running += 1
                racers.start_soon(race, True)
            await settled.wait()
            racers.cancel_scope.cancel()  # the slower copy, if any, is not needed
        if answers:
            return answers[0]
        raise failures[0]

    async def _send_observed(
        self, batch: BatchRequest, on_request: Callable[[RequestRecord], None]
    ) -> BatchScores:
        """Send and report the attempt to ``on_request``, success or failure."""
        started = time.perf_counter()
        try:
            result = await self._transport.send(batch)
        except RerankError as error:
            on_request(
                self._record(batch, started, getattr(error, "status_code", None), error=error)
            )
            raise
        on_request(self._record(batch, started, 200, result=result))
        return result

    def _record(
        self,
        batch: BatchRequest,
        started: float,
        status_code: int | None,
        *,
        result: BatchScores | None = None,
        error: RerankError | None = None,
    ) -> RequestRecord:
        return RequestRecord(
            model=self._options.model,
            document_range=batch.document_range,
            documents=batch.n_documents,
            elapsed_s=time.perf_counter() - started,
            status_code=status_code,
            error=type(error).__name__ if error is not None else None,
            server_runtime_ms=result.runtime_ms if result is not None else None,
            input_tokens=result.input_tokens if result is not None else None,
        )

    def _split_batch(self, call: _Call, start: int, stop: int, error: APIStatusError) -> None:
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

    def _log_retry(self, call: _Call, batch: BatchRequest, event: RetryEvent) -> None:
        call.retries += 1
        first, last = batch_range_bounds(batch.document_range)
        logger.info(
            "retrying documents %d..%d of model %s in %.2f s (retry %d of %d) after %s: %s",
            first, last, self._options.model, event.delay, event.attempt,
            self._options.retry.max_retries, type(event.error).__name__, event.error,
        )  # fmt: skip


# Errors no other batch of the call can escape: a refused key, an unknown model.
_ENDPOINT_WIDE: Final = (AuthenticationError, NotFoundError)


def batch_range_bounds(document_range: tuple[int, int]) -> tuple[int, int]:
    """``(first, last)`` inclusive indices of a ``(start, stop)`` range, for messages."""
    return document_range[0], document_range[1] - 1


class _Call:
    """Mutable state of one ``rerank`` call, shared by its batch tasks."""

    __slots__ = (
        "batches",
        "deadline",
        "error",
        "first_index",
        "hedges",
        "input_tokens",
        "positions",
        "query",
        "requests",
        "retries",
        "slots",
        "spread",
        "task_group",
        "unique",
    )

    task_group: TaskGroup

    def __init__(
        self, *, query: str, unique: list[str], positions: list[int] | None, spread: bool = True
    ) -> None:
        self.query = query
        self.spread = spread
        self.unique = unique
        self.positions = positions
        self.slots = ScoreSlots(len(unique))
        self.deadline = math.inf
        self.error: Exception | None = None
        self.batches = 0
        self.requests = 0
        self.retries = 0
        self.hedges = 0
        self.input_tokens: int | None = None
        # Where each distinct document first appears, so messages name the
        # caller's indices rather than positions in the deduplicated list.
        self.first_index: list[int] | None = None
        if positions is not None:
            self.first_index = [0] * len(unique)
            seen = 0
            for index, slot in enumerate(positions):
                if slot == seen:
                    self.first_index[slot] = index
                    seen += 1

    def document_range(self, start: int, stop: int) -> tuple[int, int]:
        if self.first_index is None:
            return start, stop
        return self.first_index[start], self.first_index[stop - 1] + 1

    def record(self, start: int, result: BatchScores) -> None:
        self.slots.fill(start, result.scores)
        if result.input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + result.input_tokens

    def fail(self, error: Exception) -> None:
        """Record the first failure. The other batches keep going, so that their
        scores are kept, unless the error holds for every batch of the endpoint."""
        if self.error is None:
            self.error = error
        if not isinstance(error, RerankError) or isinstance(error, _ENDPOINT_WIDE):
            self.task_group.cancel_scope.cancel()

    def documents_scored(self) -> int:
        if self.positions is None:
            return self.slots.filled
        return sum(1 for slot in self.positions if self.slots.is_filled(slot))


# -- argument checks (before any request) --------------------------------------------------------


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} seconds, got {value}")
    return float(value)


def _checked_timeout(timeout: object) -> httpx.Timeout | float | None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    return _check_seconds("timeout", timeout, allow_zero=False)


def _non_empty(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def _checked_base_url(base_url: object) -> str:
    return check_base_url(_non_empty("base_url", base_url))


def _resolve_api_key(api_key: str | None, env_vars: Sequence[str]) -> str | None:
    if api_key is not None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, not {type(api_key).__name__}")
        return check_api_key(api_key)
    for name in env_vars:
        value = os.environ.get(name, "").strip()
        if value:
            return check_api_key(value, name=name)
    return None


def _checked_query(query: object) -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}")
    if not query.strip():
        raise ValueError("query must not be empty or blank")


def _checked_documents(documents: object) -> list[str]:
    if isinstance(documents, str | bytes):
        raise TypeError(
            f"documents must be a sequence of str, not a single {type(documents).__name__}; "
            "wrap one document in a list"
        )
    if not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a sequence of str, not {type(documents).__name__}")
    checked = list(documents)
    for index, document in enumerate(checked):
        if not isinstance(document, str):
            raise TypeError(f"documents[{index}] must be a str, not {type(document).__name__}")
    return checked
