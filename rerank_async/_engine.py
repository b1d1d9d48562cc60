"""Which HTTP engine sends a client's batches, and building it.

``http_engine="auto"`` (the default) sends through aiohttp on asyncio, a third
of httpx's CPU per request (measured, docs/benchmarks.md "Fast by default"),
and through httpx under trio or when the caller passes ``http_client=``.
A client may be built outside any event loop (a module-level client of a web
app), so "auto" settles on its engine at the first request, when the running
async library is known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, TypeAlias

import httpx
import sniffio

from ._transport import BatchRequest, Endpoint, HttpxTransport, Reply, TimeoutTypes, Transport

__all__ = ["HTTP_ENGINES", "AutoTransport", "HttpEngine", "build_transport", "check_engine"]

HttpEngine: TypeAlias = Literal["auto", "httpx", "aiohttp"]
HTTP_ENGINES: tuple[HttpEngine, ...] = ("auto", "httpx", "aiohttp")

logger = logging.getLogger("rerank_async")


def check_engine(http_engine: object, *, has_http_client: bool) -> HttpEngine:
    """``http_engine`` checked against the other options.

    Raises:
        ValueError: An unknown engine, or aiohttp with an httpx ``http_client``.
    """
    if http_engine not in HTTP_ENGINES:
        raise ValueError(f"http_engine must be 'auto', 'httpx' or 'aiohttp', not {http_engine!r}")
    if http_engine == "aiohttp" and has_http_client:
        raise ValueError(
            "http_client is an httpx client; it cannot be used with http_engine='aiohttp'"
        )
    return http_engine


def build_transport(
    http_engine: HttpEngine,
    endpoint: Endpoint,
    *,
    http_client: httpx.AsyncClient | None,
    timeout: httpx.Timeout | float | None,
    caller_timeout: TimeoutTypes,
    max_connections: int,
) -> Transport:
    """The transport for ``http_engine``; "auto" defers the choice to the first request.

    Args:
        http_engine: A checked engine name (``check_engine``).
        endpoint: Where the batches go.
        http_client: The caller's httpx client (forces httpx), if any.
        timeout: Per-request timeout for a client built here.
        caller_timeout: Per-request timeout with the caller's ``http_client``
            (``httpx.USE_CLIENT_DEFAULT`` keeps the client's own).
        max_connections: Pool size; the client's ``max_concurrency``.
    """

    def httpx_engine() -> Transport:
        if http_client is not None:
            return HttpxTransport(
                endpoint, http_client=http_client, owns_client=False, timeout=caller_timeout
            )
        client = httpx.AsyncClient(
            # The limiter already bounds requests in flight, so a pool of the same size
            # never makes a request wait for a connection (no PoolTimeout).
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=timeout,
            follow_redirects=False,
        )
        return HttpxTransport(endpoint, http_client=client, owns_client=True, timeout=timeout)

    def aiohttp_engine() -> Transport:
        from ._aiohttp_transport import AiohttpTransport  # imported only when chosen

        return AiohttpTransport(endpoint, max_connections=max_connections, timeout=timeout)

    if http_engine == "httpx" or http_client is not None:
        return httpx_engine()
    if http_engine == "aiohttp":
        return aiohttp_engine()
    return AutoTransport(endpoint, aiohttp_engine=aiohttp_engine, httpx_engine=httpx_engine)


class AutoTransport(Transport):
    """Sends through aiohttp on asyncio and httpx elsewhere, chosen at the first request.

    Error mapping and decoding stay in ``Transport.send``; only the POST is
    handed to the chosen engine.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        aiohttp_engine: Callable[[], Transport],
        httpx_engine: Callable[[], Transport],
    ) -> None:
        super().__init__(endpoint)
        self._make_aiohttp = aiohttp_engine
        self._make_httpx = httpx_engine
        self._engine: Transport | None = None

    @property
    def engine(self) -> str | None:
        """``"aiohttp"`` or ``"httpx"`` once chosen; ``None`` before the first request."""
        if self._engine is None:
            return None
        return "httpx" if isinstance(self._engine, HttpxTransport) else "aiohttp"

    def _choose(self) -> Transport:
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:  # pragma: no cover - send runs in a loop
            library = "unknown"
        if library == "asyncio":
            try:
                self._engine = self._make_aiohttp()
            except ImportError as error:  # a broken install: httpx still works
                logger.debug("aiohttp unavailable (%s); sending through httpx", error)
                self._engine = self._make_httpx()
        else:
            self._engine = self._make_httpx()
        return self._engine

    async def _post(self, batch: BatchRequest) -> Reply:
        engine = self._engine or self._choose()
        return await engine._post(batch)

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()
