"""``SyncRerankClient``: the async client behind a blocking facade, for scripts and notebooks.

Each sync client owns one event loop in one daemon thread (an anyio blocking portal) for its whole
life, and its ``RerankClient`` is created on that loop. Every call is handed to that loop and
waited for, so the connection pool is only ever used from the loop that created it, and
calls from several threads share the one ``max_concurrency`` bound.

Because the loop is not the caller's, a call works from a thread that already runs a loop
(Jupyter's main thread): it blocks that thread until the answer is in, like any sync call.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from types import TracebackType
from typing import Self, TypeVar, Unpack

import anyio
import httpx
from anyio.from_thread import BlockingPortal

from ._client import NOT_GIVEN, ClientArguments, ClientOptions, NotGiven, RerankClient
from ._exceptions import ClientClosedError
from ._many import RequestLike, RerankOutcome
from ._models import RequestRecord, RerankResult
from ._partial import PartialScores
from .providers import Provider

__all__ = ["SyncRerankClient"]

T = TypeVar("T")


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class SyncRerankClient:
    """A blocking reranking client with the same options, methods and results as ``RerankClient``.

    Use it as ``with SyncRerankClient(...) as client:``, or call ``client.close()``
    when done: closing closes the connections and stops the client's thread. One
    client may be shared by many threads; their calls share its ``max_concurrency``.

    Every argument means what it means for ``RerankClient`` (see there), except
    ``http_client``: an ``httpx.AsyncClient`` is bound to the event loop that first
    uses it, so a sync client makes its own and takes only an engine's name.

    Raises:
        ValueError: An option is out of range; the message names it.
        TypeError: An option has the wrong type.
    """

    def __init__(self, **options: Unpack[ClientArguments]) -> None:
        if isinstance(options.get("http_client"), httpx.AsyncClient):
            raise TypeError(
                "SyncRerankClient makes its own connections on its own event loop; pass an "
                "engine name as http_client ('auto', 'httpx', 'aiohttp'), not an httpx client"
            )

        def make_client() -> RerankClient:
            # Runs on the portal's loop, so everything the client binds is bound there.
            return RerankClient(**options)

        self._portal, self._thread = _start_portal()
        # --- lifecycle: the process the client's thread runs in, and whether it was used
        # there (see _lifecycle: a fork gets a fresh thread only if nothing was sent).
        self._portal_pid = os.getpid()
        self._used = False
        try:
            self._client = self._portal.call(make_client)
        except BaseException:
            self._stop_portal()
            raise
        self._state = _State.OPEN
        self._close_lock = threading.Lock()

    # -- the same read-only view as RerankClient ---------------------------------------------

    @property
    def options(self) -> ClientOptions:
        """The resolved options (the API key is not among them)."""
        return self._client.options

    @property
    def model(self) -> str:
        """The model this client scores with."""
        return self._client.model

    @property
    def provider(self) -> Provider:
        """The wire format in use."""
        return self._client.provider

    @property
    def batch_limit(self) -> int:
        """Most documents per request now: ``batch_size``, or less once a server said so."""
        return self._client.batch_limit

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._state is _State.CLOSED

    @property
    def on_request(self) -> Callable[[RequestRecord], None] | None:
        """Called after every HTTP attempt with a ``RequestRecord``; see ``RerankClient``.

        It runs on the client's own thread.
        """
        return self._client.on_request

    @on_request.setter
    def on_request(self, hook: Callable[[RequestRecord], None] | None) -> None:
        client = self._client

        def install() -> None:
            client.on_request = hook

        # Set on the client's loop, between two requests, never in the middle of one.
        self._open_portal().call(install)

    # -- calls --------------------------------------------------------------------------------

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        resume: PartialScores | None = None,
        instruction: str | NotGiven | None = NOT_GIVEN,
    ) -> RerankResult:
        """Score every document against ``query`` and rank them; see ``RerankClient.rerank``.

        Raises:
            TypeError, ValueError: Bad input, before any request is sent.
            RerankError: A batch failed for good, or the deadline passed;
                ``error.partial`` holds what was scored (pass it as ``resume``).
            ClientClosedError: The client is closed, or was closed while the call
                ran or waited, or is used in a forked process after sending.
        """
        portal = self._open_portal(use=True)
        client = self._client

        async def call() -> RerankResult:
            return await client.rerank(
                query,
                documents,
                top_k=top_k,
                total_timeout=total_timeout,
                resume=resume,
                instruction=instruction,
            )

        return self._call(portal, call)

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        instruction: str | NotGiven | None = NOT_GIVEN,
    ) -> list[float]:
        """Scores only, ``scores[i]`` for ``documents[i]``; see ``rerank``."""
        return self.rerank(
            query, documents, total_timeout=total_timeout, instruction=instruction
        ).scores

    @contextmanager
    def rerank_many(
        self,
        requests: Iterable[RequestLike],
        *,
        max_pending: int | None = None,
        fail_fast: bool = False,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[Iterator[RerankOutcome]]:
        """Rerank many requests concurrently; outcomes arrive as they complete.

        The sync form of ``RerankClient.rerank_many``::

            with client.rerank_many(requests) as outcomes:
                for outcome in outcomes:
                    ...

        ``requests`` is read lazily on the client's thread, so keep its iteration
        quick. Leaving the block early cancels the requests still running.

        Raises:
            ValueError: ``max_pending`` < 1.
            ClientClosedError: The client is closed, or was closed while the block ran.
        """
        portal = self._open_portal(use=True)
        client = self._client
        many = portal.call(
            lambda: client.rerank_many(
                requests, max_pending=max_pending, fail_fast=fail_fast, total_timeout=total_timeout
            )
        )
        with portal.wrap_async_context_manager(many) as outcomes:
            yield _BlockingOutcomes(portal, outcomes)

    def close(self) -> None:
        """Close the connections and stop the client's thread. Safe to call twice.

        Calls still running or waiting, from any thread, end with ``ClientClosedError``
        within about a second (see ``RerankClient.aclose``).
        """
        with self._close_lock:
            if self._state is _State.CLOSED:
                return
            self._state = _State.CLOSED
        if self._portal_pid != os.getpid():
            return  # a fork: the thread and the connections were the parent's
        try:
            self._portal.call(self._client.aclose)
        finally:
            self._stop_portal()

    def __enter__(self) -> Self:
        self._open_portal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Sync" + repr(self._client)

    def _stop_portal(self) -> None:
        self._portal.call(self._portal.stop)
        self._thread.join()

    def _open_portal(self, *, use: bool = False) -> BlockingPortal:
        if self._state is _State.CLOSED:
            raise ClientClosedError("SyncRerankClient is closed; create a new client")
        if self._portal_pid != os.getpid():
            self._restart_after_fork()
        if use:
            self._used = True
        return self._portal

    def _restart_after_fork(self) -> None:
        """A fresh thread in this process, if nothing was sent from the parent's.

        The client's thread did not survive the fork, and a call handed to it would
        wait forever.

        Raises:
            ClientClosedError: The client sent from the parent: its connections are
                the parent's (see ``RerankClient``).
        """
        if self._used:
            raise ClientClosedError(
                f"this SyncRerankClient was created and used in process {self._portal_pid}, "
                f"and this is process {os.getpid()} (a fork): its thread and connections "
                "belong to the parent. Create a client in each process, after the fork"
            )
        # A lock another thread held at the fork stays locked in the child.
        self._close_lock = threading.Lock()
        self._portal, self._thread = _start_portal()
        self._portal_pid = os.getpid()

    def _call(self, portal: BlockingPortal, function: Callable[[], Awaitable[T]]) -> T:
        """``portal.call(function)``; a portal stopped by ``close`` meanwhile is
        ``ClientClosedError``, like any call that close cut short."""
        try:
            return portal.call(function)
        except RuntimeError as error:
            if isinstance(error, ClientClosedError) or self._state is not _State.CLOSED:
                raise
            raise ClientClosedError(
                "SyncRerankClient was closed while this call waited; create a new client"
            ) from error


def _start_portal() -> tuple[BlockingPortal, threading.Thread]:
    """Start an event loop in a daemon thread and return its portal.

    A daemon thread, not anyio's ``start_blocking_portal`` (a worker of a thread pool that
    the interpreter joins at exit): a sync client left open must not keep a script or a
    notebook kernel from exiting.
    """
    ready: Future[BlockingPortal] = Future()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve)
        except BaseException as error:  # handed to the constructor, which re-raises it
            if not ready.done():
                ready.set_exception(error)

    thread = threading.Thread(target=run, name="rerank-async-sync-client", daemon=True)
    thread.start()
    return ready.result(), thread


class _BlockingOutcomes:
    """Iterates an async iterator that lives on a portal's loop, one blocking step at a time."""

    def __init__(self, portal: BlockingPortal, outcomes: AsyncIterator[RerankOutcome]) -> None:
        self._portal = portal
        self._outcomes = outcomes

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> RerankOutcome:
        try:
            return self._portal.call(self._outcomes.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
