"""Transport construction: the chosen engine, then the wrappers around it.

``http_engine="auto"`` (the default) sends through aiohttp on asyncio, a third
of httpx's CPU per request (measured, docs/benchmarks.md "Fast by default"),
and through httpx under trio or when the caller passes ``http_client=``. A
client may be built outside any event loop (a module-level client of a web
app), so "auto" settles on its engine at the first request, when the running
async library is known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import httpx
import sniffio

from .._config import NotGiven, ResolvedConfig
from .._constants import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from .._models import RequestRecord
from .base import (
    BatchRequest,
    BatchSender,
    Endpoint,
    Reply,
    TimeoutTypes,
    Transport,
    attempt_deadline,
)
from .environment import Environment, read_environment
from .httpx_engine import HttpxTransport
from .observe import ObservedTransport

__all__ = ["AutoTransport", "OpenTransport", "open_transport"]

logger = logging.getLogger("rerank_async")


class OpenTransport(NamedTuple):
    """What ``open_transport`` builds: the engine, and the model its records name."""

    engine: Transport
    model: str

    @property
    def sender(self) -> BatchSender:
        """The chain to send through with no observer: the engine itself."""
        return self.engine

    @property
    def engine_name(self) -> str:
        """``"aiohttp"`` or ``"httpx"``; ``"auto"`` until an automatic choice is made."""
        if isinstance(self.engine, AutoTransport):
            return self.engine.engine
        return "httpx" if isinstance(self.engine, HttpxTransport) else "aiohttp"

    def observed(self, on_request: Callable[[RequestRecord], None] | None) -> BatchSender:
        """The chain to send through, reporting every attempt to ``on_request`` when set.

        The wrapper chain is built here and only here, outermost last; with no
        observer there is no wrapper and no frame per request.
        """
        if on_request is None:
            return self.engine
        return ObservedTransport(self.engine, model=self.model, on_request=on_request)


def open_transport(config: ResolvedConfig) -> OpenTransport:
    """The engine a client sends through (see ``OpenTransport.observed`` for the chain)."""
    # A caller's http_client follows its own trust_env; ours read the environment once.
    environment = (
        None
        if config.http_client is not None
        else read_environment(config.options.url, trust_env=config.options.trust_env)
    )
    return OpenTransport(_open_engine(config, environment), config.options.model)


def _open_engine(config: ResolvedConfig, environment: Environment | None) -> Transport:
    if environment is None or config.http_engine == "httpx":
        return _open_httpx(config, environment)
    # aiohttp speaks to plain HTTP proxies only; HTTPS and SOCKS ones go through httpx.
    aiohttp_can = environment.proxy_scheme in (None, "http")
    if config.http_engine == "aiohttp":
        if not aiohttp_can:
            raise ValueError(
                f"http_engine='aiohttp' cannot use the {environment.proxy_scheme} proxy the "
                "environment names for this endpoint (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY); "
                "use http_engine='auto' or 'httpx', or trust_env=False to ignore it"
            )
        return _open_aiohttp(config, environment)
    if not aiohttp_can:
        return _open_httpx(config, environment)
    timeout = config.timeout
    return AutoTransport(
        _endpoint(config, environment),
        # The whole-attempt deadline both engines would apply: Transport.send enforces it.
        response_timeout=attempt_deadline(
            _default_timeout() if isinstance(timeout, NotGiven) else timeout
        ),
        aiohttp_engine=lambda: _open_aiohttp(config, environment),
        httpx_engine=lambda: _open_httpx(config, environment),
    )


def _endpoint(config: ResolvedConfig, environment: Environment | None) -> Endpoint:
    options = config.options
    return Endpoint(
        provider=config.provider,
        url=options.url,
        model=options.model,
        headers=config.headers,
        api_key=config.api_key,
        other_secrets=() if environment is None else environment.proxy_secrets(),
    )


def _default_timeout() -> httpx.Timeout:
    return httpx.Timeout(DEFAULT_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT)


def _open_aiohttp(config: ResolvedConfig, environment: Environment) -> Transport:
    from .aiohttp_engine import AiohttpTransport  # imported only when chosen

    timeout = config.timeout
    return AiohttpTransport(
        _endpoint(config, environment),
        max_connections=config.options.max_concurrency,
        timeout=_default_timeout() if isinstance(timeout, NotGiven) else timeout,
        ssl_context=environment.ssl_context,
        proxy=environment.proxy,
    )


def _open_httpx(config: ResolvedConfig, environment: Environment | None) -> Transport:
    options = config.options
    default_timeout = _default_timeout()
    timeout = config.timeout
    http_client = config.http_client
    request_timeout: TimeoutTypes
    if isinstance(timeout, NotGiven):
        # A caller's client keeps its own timeout unless one is given here.
        request_timeout = httpx.USE_CLIENT_DEFAULT if http_client is not None else default_timeout
    else:
        request_timeout = timeout
    if http_client is None:
        assert environment is not None  # read for every client of ours
        client = httpx.AsyncClient(
            # The limiter already bounds requests in flight, so a pool of the same
            # size never makes a request wait for a connection (no PoolTimeout).
            limits=httpx.Limits(
                max_connections=options.max_concurrency,
                max_keepalive_connections=options.max_concurrency,
            ),
            timeout=default_timeout,
            follow_redirects=False,
            # What the environment says, read once by httpx's rules (environment.py),
            # given explicitly, so that both engines use the same proxy and trust.
            proxy=environment.proxy,
            verify=environment.ssl_context,
            trust_env=False,
        )
    else:
        client = http_client
    return HttpxTransport(
        _endpoint(config, environment),
        http_client=client,
        owns_client=http_client is None,
        timeout=request_timeout,
    )


class AutoTransport(Transport):
    """Sends through aiohttp on asyncio and httpx elsewhere, chosen at the first request.

    Error mapping and decoding stay in ``Transport.send``; only the POST is
    handed to the chosen engine.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        response_timeout: float | None,
        aiohttp_engine: Callable[[], Transport],
        httpx_engine: Callable[[], Transport],
    ) -> None:
        super().__init__(endpoint, response_timeout=response_timeout)
        self._make_aiohttp = aiohttp_engine
        self._make_httpx = httpx_engine
        self._engine: Transport | None = None

    @property
    def engine(self) -> str:
        """``"aiohttp"`` or ``"httpx"`` once chosen; ``"auto"`` before the first request."""
        if self._engine is None:
            return "auto"
        return "httpx" if isinstance(self._engine, HttpxTransport) else "aiohttp"

    def _choose(self) -> Transport:
        if self._engine is not None:
            return self._engine
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:  # pragma: no cover - _post runs in a loop
            library = "unknown"
        if library == "asyncio":
            try:
                self._engine = self._make_aiohttp()
            except ImportError as error:  # pragma: no cover - a broken install
                logger.debug("aiohttp unavailable (%s); sending through httpx", error)
                self._engine = self._make_httpx()
        else:
            self._engine = self._make_httpx()
        # From now on ``send`` posts straight through the chosen engine, with no
        # extra frame of delegation per request.
        self._post = self._engine._post  # type: ignore[method-assign]
        self._post_in_time = self._engine._post_in_time  # type: ignore[method-assign]
        return self._engine

    async def _post(self, batch: BatchRequest) -> Reply:
        return await self._choose()._post(batch)

    async def aclose(self) -> None:
        self.closed = True
        if self._engine is not None:
            await self._engine.aclose()
