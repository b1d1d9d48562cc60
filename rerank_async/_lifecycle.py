"""A client's lifecycle: open or closed, the process it belongs to, and the calls running on it.

Closing fails every call still running or waiting on the client with one typed error,
``ClientClosedError``, promptly (trio and anyio raise ``ClosedResourceError`` to the
waiters of a closed resource the same way). Each call, and each ``rerank_many`` block,
runs under a ``CallGuard`` kept in the lifecycle's registry. ``Lifecycle.close``:

1. marks the client closed, so that no call starts and no guard is entered again;
2. cancels every guard: a call waiting for a slot, sleeping before a retry, or with an
   attempt in flight stops at once, and its guard turns the cancellation into
   ``ClientClosedError`` (the caller's own cancellations pass through untouched);
3. waits until the cancelled calls have left (at most ``DRAIN_SECONDS``), so that their
   connections are given back, then releases the transports, which refuse to send or
   open anything from then on: no retry, no hedge, no new session after close.

fork: a client remembers the process that made it. In another process (a fork: gunicorn's
preload, multiprocessing's fork start method, Celery's prefork workers), a client that
never sent anything holds no connection and no event loop, and simply carries on there. A
client that did send owns sockets, a session and loop-bound state that belong to the
parent: every call on it raises ``ClientClosedError`` at once, saying to make a client per
process, and closing it releases nothing (closing the parent's TLS sockets from the child
would write into the parent's streams).
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Final, TypeVar

import anyio
import sniffio

from ._exceptions import ClientClosedError

__all__ = ["DRAIN_SECONDS", "CallGuard", "Lifecycle"]

# How long close() waits for cancelled calls to leave before releasing the connections
# anyway. A cancelled attempt leaves at its next checkpoint, in microseconds; the bound only
# matters for a call stuck in a caller's synchronous code, and keeps close() under 2 s.
DRAIN_SECONDS: Final = 1.0

T = TypeVar("T")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Lifecycle:
    """One client's state (httpx's UNOPENED / OPENED / CLOSED), its process, its running calls.

    Args:
        owner: The client's class name, for messages.
        describe: Where the client sends (endpoint and model), for messages.
    """

    def __init__(self, *, owner: str, describe: str) -> None:
        self._owner = owner
        self._describe = describe
        self._state = _State.UNOPENED
        self._pid = os.getpid()
        self._used = False
        self._guards: set[CallGuard] = set()
        self._drained: anyio.Event | None = None

    @property
    def is_closed(self) -> bool:
        """Whether ``close`` has run."""
        return self._state is _State.CLOSED

    def open(self) -> None:
        """Enter the ``async with`` block.

        Raises:
            ClientClosedError: The client is closed (a closed client never reopens).
        """
        if self._state is _State.CLOSED:
            raise ClientClosedError(
                f"cannot reopen a closed {self._owner}; create a new one [{self._describe}]"
            )
        self.check()
        self._state = _State.OPENED

    def check(self) -> None:
        """Raise unless calls may start: the client is open and in the process that used it.

        Raises:
            ClientClosedError: Closed, or used in another process before a fork.
        """
        if self._state is _State.CLOSED:
            raise ClientClosedError(
                f"{self._owner} is closed; create a new client [{self._describe}]"
            )
        if self._pid != os.getpid():
            if self._used or self._guards:
                raise ClientClosedError(
                    f"this {self._owner} was created and used in process {self._pid}, and this "
                    f"is process {os.getpid()} (a fork): its connections and event loop belong "
                    "to the parent. Create a client in each process, after the fork (for "
                    f"example in gunicorn's post_fork or Celery's worker_process_init) "
                    f"[{self._describe}]"
                )
            # Nothing was opened in the parent: the client is as new here.
            self._pid = os.getpid()

    def call(self) -> CallGuard:
        """A guard for one call (or ``rerank_many`` block): ``async with lifecycle.call():``.

        Entering it raises ``ClientClosedError`` when the client is closed, or forked
        after use (see ``check``).
        """
        return CallGuard(self)

    @asynccontextmanager
    async def guarded(self, block: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
        """``block`` (``rerank_many``'s) under a guard: closing the client ends it with
        ``ClientClosedError``, however its input or its consumer waits."""
        async with self.call():
            async with block as value:
                yield value

    async def close(self, release: Callable[[], Awaitable[None]]) -> None:
        """Fail every running call with ``ClientClosedError``, then ``release`` the transports.

        Idempotent. Bounded: the calls get ``DRAIN_SECONDS`` to leave, ``release`` runs
        shielded (``aclose`` may be called from a task that is itself being cancelled).
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._pid != os.getpid() and (self._used or self._guards):
            return  # the parent's sockets and session: never touched from a fork
        for guard in tuple(self._guards):
            guard.cancel()
        with anyio.CancelScope(shield=True):
            if self._guards:
                self._drained = anyio.Event()
                with anyio.move_on_after(DRAIN_SECONDS):
                    await self._drained.wait()
            await release()

    def closed_error(self) -> ClientClosedError:
        """The error a call cut short by ``close`` raises."""
        return ClientClosedError(
            f"{self._owner} was closed while this call was running or waiting; nothing is "
            f"retried after close [{self._describe}]"
        )

    def _leave(self, guard: CallGuard) -> None:
        self._guards.discard(guard)
        if self._drained is not None and not self._guards:
            self._drained.set()


class CallGuard:
    """Runs one call cancellable by ``Lifecycle.close``, which it turns into ``ClientClosedError``.

    On asyncio the cancellation is an ``asyncio.timeout(None)`` that ``cancel`` moves to
    now: 1.9 us to enter and leave, where an anyio ``CancelScope`` takes 7-8 us; the whole
    guard costs about 3.7 us a call (measured on the 2-core machine). Elsewhere (trio) it
    is an anyio ``CancelScope``.
    """

    __slots__ = ("_cancelled", "_lifecycle", "_scope", "_timeout")

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._cancelled = False
        self._timeout: asyncio.Timeout | None = None
        self._scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        """Stop the call at its next checkpoint (``close`` calls this, on the guard's loop)."""
        self._cancelled = True
        if self._timeout is not None:
            self._timeout.reschedule(0.0)  # a time in the past: expires at the loop's next turn
        elif self._scope is not None:
            self._scope.cancel()

    async def __aenter__(self) -> None:
        self._lifecycle.check()
        self._lifecycle._used = True
        if sniffio.current_async_library() == "asyncio":
            self._timeout = asyncio.timeout(None)
            await self._timeout.__aenter__()
        else:
            self._scope = anyio.CancelScope()
            self._scope.__enter__()
        self._lifecycle._guards.add(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lifecycle = self._lifecycle
        try:
            if self._timeout is not None:
                try:
                    await self._timeout.__aexit__(exc_type, exc, traceback)
                except TimeoutError as error:  # only our own cancel expires it
                    raise lifecycle.closed_error() from error
            else:
                assert self._scope is not None
                # trio's scopes answer True on a plain exit too: only a cancelled one matters.
                if self._scope.__exit__(exc_type, exc, traceback) and self._cancelled:
                    raise lifecycle.closed_error()
        finally:
            lifecycle._leave(self)
        if not self._cancelled:
            return
        # Cancelled by close, but the call ended otherwise first (an answer, or the error of
        # an attempt cut short): after close, no call succeeds, and each fails one way. A
        # cancellation that is not ours (the caller's own) passes through untouched.
        if exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class()):
            return
        if exc is None:
            raise lifecycle.closed_error()
        raise lifecycle.closed_error() from exc
