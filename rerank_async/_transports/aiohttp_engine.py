"""The aiohttp engine: the same requests at a third of httpx's CPU cost.

Measured on the 2-core benchmark machine (docs/benchmarks.md, "Fast by
default"), so it is the default on asyncio (``http_engine="auto"``); aiohttp
runs on asyncio only, so trio and a caller's ``http_client=`` use httpx.
aiohttp is a core dependency, imported only when this engine is chosen.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from contextvars import ContextVar

import httpx

from .base import (
    STALE_CONNECTION_RETRIES,
    BatchRequest,
    Endpoint,
    Reply,
    Transport,
    attempt_deadline,
)

try:
    import aiohttp
except ImportError as error:  # pragma: no cover - exercised by the missing-extra check
    raise ImportError(
        "http_engine='aiohttp' needs aiohttp, a dependency of rerank-async: "
        "pip install --force-reinstall rerank-async",
        name=error.name,
    ) from error

__all__ = ["AiohttpTransport", "client_timeout"]

logger = logging.getLogger("rerank_async")

# Whether the attempt running in this task got a connection that had carried a request
# before: set by _ReuseNotingConnector.connect, which runs in the sending task.
_REUSED: ContextVar[bool] = ContextVar("rerank_async_reused_connection", default=False)


class _ReuseNotingConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that notes, per attempt, whether its connection was reused.

    One ``WeakSet`` lookup and insert per request (about 0.3 us): cheaper than
    aiohttp's tracing, which would add a signal per phase of every request.
    """

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._carried: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  # aiohttp's signature
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        _REUSED.set(protocol in self._carried)
        if protocol is not None:
            self._carried.add(protocol)
        return connection


def _stale(error: aiohttp.ClientError) -> bool:
    """A reused connection's failure before any byte of an answer: the server closed it
    as the request went out (reset while writing, or disconnected without answering)."""
    return (
        _REUSED.get()
        and isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        and not isinstance(error, aiohttp.ClientConnectorError)
    )


def client_timeout(timeout: httpx.Timeout | float | None) -> aiohttp.ClientTimeout:
    """The aiohttp equivalent of an httpx-style timeout.

    httpx's read timeout bounds each wait for data; aiohttp calls that
    ``sock_read``. A bare number bounds every phase, as in httpx.
    """
    if timeout is None:
        return aiohttp.ClientTimeout(total=None)
    if isinstance(timeout, httpx.Timeout):
        return aiohttp.ClientTimeout(
            total=None,
            connect=timeout.pool,
            sock_connect=timeout.connect,
            sock_read=timeout.read,
        )
    return aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)


class AiohttpTransport(Transport):
    """Sends batches through one ``aiohttp.ClientSession``, created on first use."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_connections: int,
        timeout: httpx.Timeout | float | None,
        ssl_context: ssl.SSLContext,
        proxy: str | None = None,
    ) -> None:
        super().__init__(endpoint, response_timeout=attempt_deadline(timeout))
        self._max_connections = max_connections
        self._timeout = client_timeout(timeout)
        self._ssl_context = ssl_context
        # Chosen once by environment.read_environment, httpx's rules: aiohttp's own
        # trust_env would read the environment in a worker thread on every request.
        # Credentials in its URL become Proxy-Authorization (aiohttp's own handling).
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        try:
            asyncio.get_running_loop()
        except RuntimeError as error:
            raise RuntimeError(
                "http_engine='aiohttp' runs on asyncio only; use http_engine='auto' or 'httpx' "
                "with trio"
            ) from error
        connector = _ReuseNotingConnector(
            limit=self._max_connections, limit_per_host=0, ssl=self._ssl_context
        )
        # The client sets every header itself, and no cookie jar is wanted on an
        # inference API. Bodies arrive still compressed: the transport inflates
        # them under its size cap (aiohttp's own decoder has no output limit).
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
        )

    def _live_session(self, batch: BatchRequest) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            if self.closed:  # never a new session after close: it would outlive the client
                raise self._closed_error(batch)
            session = self._session = self._open_session()
        return session

    async def _post(self, batch: BatchRequest) -> Reply:
        session = self._live_session(batch)
        for resends_left in range(STALE_CONNECTION_RETRIES, -1, -1):
            _REUSED.set(False)
            answered = False
            try:
                async with session.post(
                    self._url,
                    data=batch.body,
                    headers=self._headers_for(batch),
                    allow_redirects=False,
                    proxy=self._proxy,
                ) as response:
                    answered = True
                    return await self._read_reply(batch, response)
            except (TimeoutError, aiohttp.ServerTimeoutError) as error:
                raise self._connection_error(batch, error, timed_out=True) from error
            except aiohttp.ClientError as error:
                if resends_left and not answered and _stale(error):
                    logger.debug("resending on another connection after %r", error)
                    continue
                raise self._connection_error(batch, error, timed_out=False) from error
        raise AssertionError("unreachable: the last pass returns or raises")  # pragma: no cover

    async def _read_reply(self, batch: BatchRequest, response: aiohttp.ClientResponse) -> Reply:
        try:
            content, problem = await self._read_body(
                batch,
                response.status,
                response.headers.get("Content-Encoding"),
                response.content.iter_any(),
            )
        except BaseException:
            response.close()  # unread bytes: the connection cannot be reused
            raise
        return Reply(response.status, response.headers, content, response.reason or "", problem)

    async def _post_in_time(self, batch: BatchRequest, seconds: float) -> Reply:
        # asyncio's own timeout (this engine runs on asyncio only): 3.9 us a request
        # where anyio's cancel scope takes 10, measured; both raise TimeoutError.
        self._live_session(batch)  # off asyncio, the error that says so
        async with asyncio.timeout(seconds):
            return await self._post(batch)

    async def aclose(self) -> None:
        self.closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
