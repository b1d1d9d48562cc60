"""Many rerank calls at once: lazy input, bounded memory, outcomes as they complete.

``RerankClient.rerank_many`` is an async context manager rather than an async
generator: its work runs in a task group, and a task group must not be
suspended across a generator's ``yield`` (structured concurrency; PEP 789).
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._config import NOT_GIVEN, NotGiven
from ._exceptions import RerankError
from ._models import RerankResult
from ._retry import is_retryable

__all__ = ["RequestLike", "RerankOutcome", "RerankRequest", "rerank_each", "run_many"]


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """One query and its candidates, for ``rerank_many``.

    Attributes:
        query: The search query.
        documents: Candidate texts.
        id: The caller's id, echoed in the outcome (``None``: use the position).
        top_k: Cut of ``results`` for this request.
        metadata: Anything the caller wants back with the outcome.
        instruction: This request's instruction (``None``: none); the client's
            when left out.
    """

    query: str
    documents: Sequence[str]
    id: str | int | None = None
    top_k: int | None = None
    metadata: object = field(default=None, compare=False)
    instruction: str | NotGiven | None = NOT_GIVEN


RequestLike: TypeAlias = RerankRequest | tuple[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class RerankOutcome:
    """What became of one request of ``rerank_many``.

    Attributes:
        position: 0-based position of the request in the input.
        id: The request's id, or its position when it had none.
        request: The request itself (``None`` if the input item was unusable).
        result: The result, when the request succeeded.
        error: Why it failed (after its retries), when it did.
        elapsed_s: Seconds from start to finish of this request.
    """

    position: int
    id: str | int
    request: RerankRequest | None
    result: RerankResult | None = None
    error: Exception | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.error is None


RerankCall = Callable[[RerankRequest], Awaitable[RerankResult]]


def rerank_each(
    rerank: Callable[..., Awaitable[RerankResult]],
    requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
    *,
    max_pending: int,
    fail_fast: bool,
    deadline_seconds: float | None,
    beside: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> AbstractAsyncContextManager[AsyncIterator[RerankOutcome]]:
    """``RerankClient.rerank_many``: each request through ``rerank`` under its deadline.

    A request that fails with work kept (``error.partial``) is resumed once, sending
    only its missing documents, before its outcome records the failure. The resume
    runs on what is left of the request's deadline: a deadline is never extended.
    ``beside`` (a packing pool's sender) runs for the whole block.
    """

    async def rerank_one(request: RerankRequest) -> RerankResult:
        started = anyio.current_time()
        try:
            return await rerank(
                request.query,
                request.documents,
                top_k=request.top_k,
                total_timeout=deadline_seconds,
                instruction=request.instruction,
            )
        except RerankError as error:
            # Before giving up, send once more only what has no score yet; an error
            # that retrying cannot fix (401, 404, 400, too large, the deadline) is final.
            if error.partial is None or not is_retryable(error):
                raise
            remaining = None
            if deadline_seconds is not None:
                remaining = deadline_seconds - (anyio.current_time() - started)
                if remaining <= 0:
                    raise
            return await rerank(
                request.query,
                request.documents,
                top_k=request.top_k,
                total_timeout=remaining,
                resume=error.partial,
                instruction=request.instruction,
            )

    outcomes = run_many(rerank_one, requests, max_pending=max_pending, fail_fast=fail_fast)
    if beside is None:
        return outcomes
    return _beside(beside, outcomes)


@asynccontextmanager
async def _beside(
    beside: Callable[[], Coroutine[Any, Any, None]],
    outcomes: AbstractAsyncContextManager[AsyncIterator[RerankOutcome]],
) -> AsyncIterator[AsyncIterator[RerankOutcome]]:
    """``outcomes`` with ``beside`` running for them until the block ends."""
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(beside)
        try:
            async with outcomes as iterator:
                yield iterator
        finally:
            task_group.cancel_scope.cancel()


@asynccontextmanager
async def run_many(
    rerank: RerankCall,
    requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
    *,
    max_pending: int,
    fail_fast: bool,
) -> AsyncIterator[AsyncIterator[RerankOutcome]]:
    """Run ``rerank`` over ``requests`` and hand out outcomes as they complete.

    At most ``max_pending`` requests are read from the input and not yet
    handed to the consumer, which bounds memory whatever the input size.

    Raises:
        Exception: With ``fail_fast``, the first failed request's error; and
            always, an error raised by the input iterable itself.
    """
    send, receive = anyio.create_memory_object_stream[RerankOutcome](max_buffer_size=max_pending)
    admission = anyio.Semaphore(max_pending)
    run = _Run(rerank=rerank, admission=admission, fail_fast=fail_fast)
    async with anyio.create_task_group() as task_group:
        run.task_group = task_group
        task_group.start_soon(run.feed, requests, send)
        try:
            yield _Outcomes(receive, admission)
        finally:
            # The consumer is done, early or not: nothing may keep running. Cancel
            # before closing, so no worker meets a closed stream.
            task_group.cancel_scope.cancel()
            receive.close()
    if run.failure is not None:
        raise run.failure


@dataclass
class _Run:
    rerank: RerankCall
    admission: anyio.Semaphore
    fail_fast: bool
    failure: Exception | None = None
    task_group: TaskGroup = field(init=False)

    def fail(self, error: Exception) -> None:
        if self.failure is None:
            self.failure = error
        self.task_group.cancel_scope.cancel()

    async def feed(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        send: MemoryObjectSendStream[RerankOutcome],
    ) -> None:
        async with send:
            position = 0
            try:
                async with aclosing(_aiter(requests)) as items:
                    async for item in items:
                        await self.admission.acquire()
                        self.task_group.start_soon(self.one, item, position, send.clone())
                        position += 1
            except Exception as error:  # the input itself broke: stop the run
                self.fail(error)

    async def one(
        self, item: object, position: int, send: MemoryObjectSendStream[RerankOutcome]
    ) -> None:
        async with send:
            started = anyio.current_time()
            request: RerankRequest | None = None
            result: RerankResult | None = None
            failure: Exception | None = None
            try:
                request = _as_request(item, position)
                result = await self.rerank(request)
            except Exception as error:
                if self.fail_fast:
                    self.fail(error)
                    return
                failure = error
            outcome = RerankOutcome(
                position=position,
                id=_id_of(request, position),
                request=request,
                result=result,
                error=failure,
                elapsed_s=anyio.current_time() - started,
            )
            await send.send(outcome)


class _Outcomes:
    """The consumer's view: each outcome taken frees room for one more request."""

    def __init__(
        self, receive: MemoryObjectReceiveStream[RerankOutcome], admission: anyio.Semaphore
    ) -> None:
        self._receive = receive
        self._admission = admission

    def __aiter__(self) -> _Outcomes:
        return self

    async def __anext__(self) -> RerankOutcome:
        try:
            outcome = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self._admission.release()
        return outcome


async def _aiter(
    items: Iterable[RequestLike] | AsyncIterable[RequestLike],
) -> AsyncGenerator[RequestLike, None]:
    # A checkpoint after each item: a synchronous iterable, or an async one that
    # never waits, would otherwise start requests in bursts and starve the loop.
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
            await anyio.lowlevel.checkpoint()
    else:
        for item in items:
            yield item
            await anyio.lowlevel.checkpoint()


def _as_request(item: object, position: int) -> RerankRequest:
    if isinstance(item, RerankRequest):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return RerankRequest(query=item[0], documents=item[1])
    raise TypeError(
        f"request {position} must be a RerankRequest or a (query, documents) tuple, "
        f"not {type(item).__name__}"
    )


def _id_of(request: RerankRequest | None, position: int) -> str | int:
    return request.id if request is not None and request.id is not None else position
